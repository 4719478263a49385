package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/register"
)

// Consent refresh campaigns: the list, a new one checked first — whom it
// reaches, before anything is sent — and a campaign's page whose counts
// follow the mail and the answers.

// campaignsData is what the campaigns list shows.
type campaignsData struct {
	Campaigns []consent.Campaign
	Names     map[string]string // purpose names by key
	CanEdit   bool
}

func (c *Console) campaignsPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	cs, err := c.consent.Campaigns(r.Context(), p.TenantID)
	if err != nil {
		return err
	}
	names, _, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "campaigns", &view{Title: "Consent campaigns", Back: "/consent",
		Data: campaignsData{Campaigns: cs, Names: names, CanEdit: p.Can("subjects:write")}})
}

// consentPurposes answers the register's purpose names by key, and the
// purposes that rest on consent.
func (c *Console) consentPurposes(r *http.Request) (map[string]string, []register.Purpose, error) {
	ps, err := c.register.List(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return nil, nil, err
	}
	names := map[string]string{}
	var consented []register.Purpose
	for _, p := range ps {
		names[p.Key] = p.Name
		if p.LegalBasis == register.Consent {
			consented = append(consented, p)
		}
	}
	return names, consented, nil
}

// campaignForm is what the new campaign pages show.
type campaignForm struct {
	Purposes []register.Purpose
	Preview  *consent.Preview // whom it reaches, once checked
	Purpose  string           // the chosen purpose's name
}

func (c *Console) newCampaignPage(w http.ResponseWriter, r *http.Request) error {
	_, ps, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := &form{Values: url.Values{"purpose": {q.Get("purpose")}, "audience": {or(q.Get("audience"), consent.AudienceMissing)},
		"link_days": {"14"}, "older_than_months": {"12"}}}
	return c.render(w, r, http.StatusOK, "campaign-new", &view{Title: "New consent campaign", Back: "/campaigns", Form: f,
		Data: campaignForm{Purposes: ps}})
}

// campaignInput reads a campaign from f, adding what is wrong to it.
func campaignInput(f *form) consent.CampaignInput {
	in := consent.CampaignInput{Name: strings.TrimSpace(f.Value("name")), Purpose: f.Value("purpose"), Audience: f.Value("audience")}
	f.required("name", "a name for the campaign", "purpose", "the purpose")
	number := func(field, label string) int {
		v := strings.TrimSpace(f.Value(field))
		n, err := strconv.Atoi(v)
		if v != "" && err != nil {
			f.add(field, "Enter the "+label+" as a whole number.")
		}
		return n
	}
	in.LinkDays = number("link_days", "number of days")
	if in.Audience == consent.AudienceStale || in.Audience == consent.AudienceMissingOrStale {
		in.OlderThanMonths = number("older_than_months", "number of months")
	}
	return in
}

var campaignNouns = map[string]string{"name": "name", "purpose": "purpose", "audience": "audience",
	"older_than_months": "number of months", "link_days": "number of days"}

// previewCampaign checks the form and says whom the campaign would reach.
func (c *Console) previewCampaign(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	names, ps, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	in := campaignInput(f)
	d := campaignForm{Purposes: ps, Purpose: names[in.Purpose]}
	if len(f.Problems) == 0 {
		pv, err := c.consent.PreviewCampaign(r.Context(), signedIn(r).TenantID, in)
		if err == nil {
			d.Preview = &pv
			return c.render(w, r, http.StatusOK, "campaign-new", &view{Title: "Check the campaign", Back: "/campaigns/new", Form: f, Data: d})
		}
		if !f.refused(err, "name", campaignNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "campaign-new", &view{Title: "New consent campaign", Back: "/campaigns", Form: f, Data: d})
}

func (c *Console) startCampaign(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	in := campaignInput(f)
	if len(f.Problems) == 0 {
		cp, err := c.consent.StartCampaign(r.Context(), signedIn(r).TenantID, in)
		if err == nil {
			return c.redirect(w, r, "/campaigns/"+cp.ID, "campaign-started")
		}
		if !f.refused(err, "name", campaignNouns) {
			return err
		}
	}
	_, ps, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "campaign-new", &view{Title: "New consent campaign", Back: "/campaigns", Form: f,
		Data: campaignForm{Purposes: ps}})
}

func (c *Console) campaignPage(w http.ResponseWriter, r *http.Request) error {
	cp, err := c.consent.Campaign(r.Context(), signedIn(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	names, _, err := c.consentPurposes(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "campaign", &view{Title: cp.Name, Back: "/campaigns",
		Data: map[string]any{"Campaign": cp, "Purpose": or(names[cp.Purpose], cp.Purpose), "Expired": !c.now().Before(cp.ExpiresAt)}})
}
