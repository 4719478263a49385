package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/register"
)

// The processing register (Art. 30): purposes as a table, a form that
// picks data and subject categories from the taxonomy, notice texts with
// their versions and a diff between two of them, and the export an
// auditor reads.

// registerData is what the register's table shows.
type registerData struct {
	Purposes []register.Purpose
	Names    map[string]string // category names by key
	CanEdit  bool
}

func (c *Console) registerPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ps, err := c.register.List(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "register", &view{Title: "Processing register",
		Data: registerData{Purposes: ps, Names: categoryNames(), CanEdit: p.Can("purposes:write")}})
}

// categoryNames are the taxonomy's names by key.
func categoryNames() map[string]string {
	t := register.Shipped()
	names := map[string]string{}
	for _, c := range slices.Concat(t.DataCategories, t.SubjectCategories) {
		names[c.Key] = c.Name
	}
	return names
}

// purposeForm is what the purpose form shows.
type purposeForm struct {
	Taxonomy   register.Taxonomy
	Bases      []string
	Art9       []string
	Art10      []string
	Transfers  []int // rows of the transfers table
	Mechanisms []string
	New        bool
	Key        string
}

func newPurposeForm(f *form, isNew bool, key string) purposeForm {
	rows := 1
	for f.Value("transfer_country_"+strconv.Itoa(rows-1)) != "" {
		rows++
	}
	pf := purposeForm{Taxonomy: register.Shipped(), Bases: register.LegalBases, Art9: register.Art9Conditions,
		Art10: register.Art10Conditions, Mechanisms: register.TransferMechanisms, New: isNew, Key: key}
	for i := range rows {
		pf.Transfers = append(pf.Transfers, i)
	}
	return pf
}

// purposeValues fills a form with p.
func purposeValues(p register.Purpose) url.Values {
	v := url.Values{"key": {p.Key}, "name": {p.Name}, "description": {p.Description}, "legal_basis": {p.LegalBasis},
		"data_categories": p.DataCategories, "subject_categories": p.SubjectCategories, "special_conditions": p.SpecialConditions,
		"recipients": {strings.Join(p.Recipients, "\n")}, "retention_days": {strconv.Itoa(p.RetentionDays)},
		"consent_valid_days": {strconv.Itoa(p.ConsentValidDays)}}
	for i, t := range p.Transfers {
		v.Set("transfer_country_"+strconv.Itoa(i), t.Country)
		v.Set("transfer_mechanism_"+strconv.Itoa(i), t.Mechanism)
	}
	return v
}

// purposeOf reads a purpose from f, adding what is wrong with it.
func purposeOf(f *form) register.Purpose {
	p := register.Purpose{Key: strings.TrimSpace(f.Value("key")), Name: f.Value("name"), Description: f.Value("description"),
		LegalBasis: f.Value("legal_basis"), DataCategories: f.Values["data_categories"], SubjectCategories: f.Values["subject_categories"],
		SpecialConditions: f.Values["special_conditions"], Transfers: []register.Transfer{}}
	for _, line := range strings.Split(f.Value("recipients"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			p.Recipients = append(p.Recipients, line)
		}
	}
	for i := 0; ; i++ {
		country := strings.ToUpper(strings.TrimSpace(f.Value("transfer_country_" + strconv.Itoa(i))))
		if country == "" {
			break
		}
		p.Transfers = append(p.Transfers, register.Transfer{Country: country, Mechanism: f.Value("transfer_mechanism_" + strconv.Itoa(i))})
	}
	days := func(field, label string) int {
		v := strings.TrimSpace(f.Value(field))
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			f.add(field, "Enter the "+label+" as a whole number of days, or 0.")
		}
		return n
	}
	p.RetentionDays = days("retention_days", "retention")
	p.ConsentValidDays = days("consent_valid_days", "validity of a consent")
	return p
}

var purposeNouns = map[string]string{"key": "key", "name": "name", "description": "description", "legal_basis": "legal basis",
	"data_categories": "data categories", "subject_categories": "categories of people", "special_conditions": "condition",
	"recipients": "recipients", "transfers": "transfer", "retention_days": "retention", "consent_valid_days": "validity of a consent",
	"notice_text": "notice", "text": "notice"}

func (c *Console) newPurposePage(w http.ResponseWriter, r *http.Request) error {
	f := &form{Values: url.Values{"retention_days": {"0"}, "consent_valid_days": {"0"}}}
	return c.render(w, r, http.StatusOK, "purpose-form", &view{Title: "Add a purpose", Back: "/register", Form: f, Data: newPurposeForm(f, true, "")})
}

func (c *Console) createPurpose(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	p := purposeOf(f)
	f.required("key", "a key", "name", "a name", "legal_basis", "the legal basis")
	if len(f.Problems) == 0 {
		_, err := c.register.Create(r.Context(), signedIn(r).TenantID, register.New{Purpose: p, NoticeText: f.Value("notice_text")})
		if err == nil {
			return c.redirect(w, r, "/register/"+p.Key, "purpose-added")
		}
		if !f.refused(err, "name", purposeNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "purpose-form", &view{Title: "Add a purpose", Back: "/register", Form: f,
		Data: newPurposeForm(f, true, "")})
}

func (c *Console) editPurposePage(w http.ResponseWriter, r *http.Request) error {
	p, err := c.register.Get(r.Context(), signedIn(r).TenantID, r.PathValue("key"))
	if err != nil {
		return err
	}
	f := &form{Values: purposeValues(p)}
	return c.render(w, r, http.StatusOK, "purpose-form", &view{Title: "Change " + p.Name, Back: "/register/" + p.Key, Form: f,
		Data: newPurposeForm(f, false, p.Key)})
}

func (c *Console) updatePurpose(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	p := purposeOf(f)
	if len(f.Problems) == 0 {
		_, err := c.register.Update(r.Context(), signedIn(r).TenantID, key, register.Patch{Name: &p.Name, Description: &p.Description,
			LegalBasis: &p.LegalBasis, SpecialConditions: &p.SpecialConditions, DataCategories: &p.DataCategories,
			SubjectCategories: &p.SubjectCategories, Recipients: &p.Recipients, Transfers: &p.Transfers,
			RetentionDays: &p.RetentionDays, ConsentValidDays: &p.ConsentValidDays})
		if err == nil {
			return c.redirect(w, r, "/register/"+key, "saved")
		}
		if !f.refused(err, "name", purposeNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "purpose-form", &view{Title: "Change the purpose", Back: "/register/" + key, Form: f,
		Data: newPurposeForm(f, false, key)})
}

// purposeData is what a purpose's page shows.
type purposeData struct {
	Purpose  register.Purpose
	Names    map[string]string
	Notices  []register.Notice // newest first
	Diff     []diffLine        // between From and To, when asked
	From, To int
	CanEdit  bool
}

func (c *Console) purposePage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.purpose(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "purpose", &view{Title: d.Purpose.Name, Back: "/register", Form: &form{Values: url.Values{}}, Data: d})
}

// purpose reads the purpose in the path with its notices, and the diff
// the query asks for (?from=1&to=2; by default the last two versions).
func (c *Console) purpose(r *http.Request) (purposeData, error) {
	p := signedIn(r)
	key := r.PathValue("key")
	pu, err := c.register.Get(r.Context(), p.TenantID, key)
	if err != nil {
		return purposeData{}, err
	}
	ns, err := c.register.Notices(r.Context(), p.TenantID, key)
	if err != nil {
		return purposeData{}, err
	}
	slices.Reverse(ns)
	d := purposeData{Purpose: pu, Names: categoryNames(), Notices: ns, CanEdit: p.Can("purposes:write")}
	if len(ns) > 1 {
		q := r.URL.Query()
		d.From, _ = strconv.Atoi(q.Get("from"))
		d.To, _ = strconv.Atoi(q.Get("to"))
		text := map[int]string{}
		for _, n := range ns {
			text[n.Version] = n.Text
		}
		if _, ok := text[d.From]; !ok {
			d.From = ns[1].Version
		}
		if _, ok := text[d.To]; !ok {
			d.To = ns[0].Version
		}
		d.Diff = diffTexts(text[d.From], text[d.To])
	}
	return d, nil
}

func (c *Console) addNotice(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	f.required("text", "the text of the new version")
	if len(f.Problems) == 0 {
		_, err := c.register.AddNotice(r.Context(), signedIn(r).TenantID, key, f.Value("text"))
		if err == nil {
			return c.redirect(w, r, "/register/"+key+"#notices", "notice-added")
		}
		if !f.refused(err, "text", purposeNouns) {
			return err
		}
	}
	d, err := c.purpose(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "purpose", &view{Title: d.Purpose.Name, Back: "/register", Form: f, Data: d})
}

// exportRegister downloads the register, as the API's export.
func (c *Console) exportRegister(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	if format != "json" {
		format = "csv"
	}
	return c.api.SendRegister(w, r, format)
}

// basisName says a legal basis as the regulation does.
func basisName(b string) string {
	switch b {
	case register.Consent:
		return "Consent (Art. 6(1)(a))"
	case register.Contract:
		return "Contract (Art. 6(1)(b))"
	case register.LegalObligation:
		return "Legal obligation (Art. 6(1)(c))"
	case register.VitalInterests:
		return "Vital interests (Art. 6(1)(d))"
	case register.PublicTask:
		return "Public task (Art. 6(1)(e))"
	case register.LegitimateInterests:
		return "Legitimate interests (Art. 6(1)(f))"
	}
	return b
}
