package register_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// newsletter is a valid consent-based purpose.
func newsletter() register.New {
	return register.New{NoticeText: "We email you our newsletter once a month. Unsubscribe at any time.",
		Purpose: register.Purpose{Key: "marketing.newsletter", Name: "Newsletter", LegalBasis: register.Consent,
			DataCategories: []string{"user.contact.email", "user.name"}, SubjectCategories: []string{"customer", "prospect"},
			Recipients: []string{"Mailing provider (processor)"}, Transfers: []register.Transfer{{Country: "US", Mechanism: "standard_contractual_clauses"}},
			RetentionDays: 730, ConsentValidDays: 365}}
}

// TestPurposeRules: each rule of the register refuses with the field it
// is about, and nothing is created.
func TestPurposeRules(t *testing.T) {
	env := coretest.New(t, "")
	reg := env.Core.Register
	ctx := context.Background()
	for name, c := range map[string]struct {
		mutate func(*register.New)
		field  string
	}{
		"bad key":                    {func(n *register.New) { n.Key = "Marketing Newsletter" }, "key"},
		"no name":                    {func(n *register.New) { n.Name = " " }, "name"},
		"unknown legal basis":        {func(n *register.New) { n.LegalBasis = "because" }, "legal_basis"},
		"consent without notice":     {func(n *register.New) { n.NoticeText = "" }, "notice_text"},
		"no data categories":         {func(n *register.New) { n.DataCategories = nil }, "data_categories"},
		"unknown data category":      {func(n *register.New) { n.DataCategories = []string{"user.shoe_size"} }, "data_categories"},
		"bad custom category":        {func(n *register.New) { n.DataCategories = []string{"custom.Shoe Size"} }, "data_categories"},
		"unknown subject category":   {func(n *register.New) { n.SubjectCategories = []string{"martians"} }, "subject_categories"},
		"health without a condition": {func(n *register.New) { n.DataCategories = []string{"user.health_and_medical"} }, "special_conditions"},
		"child key of a special category without a condition": {func(n *register.New) {
			n.DataCategories = []string{"user.biometric.fingerprint"}
		}, "special_conditions"},
		"criminal data with an Art. 9 condition only": {func(n *register.New) {
			n.DataCategories, n.SpecialConditions = []string{"user.criminal_history"}, []string{"explicit_consent"}
		}, "special_conditions"},
		"condition without special data": {func(n *register.New) { n.SpecialConditions = []string{"explicit_consent"} }, "special_conditions"},
		"unknown condition": {func(n *register.New) {
			n.DataCategories, n.SpecialConditions = []string{"user.health_and_medical"}, []string{"we_asked_nicely"}
		}, "special_conditions"},
		"bad transfer country": {func(n *register.New) {
			n.Transfers = []register.Transfer{{Country: "USA", Mechanism: "adequacy_decision"}}
		}, "transfers"},
		"bad transfer mechanism": {func(n *register.New) { n.Transfers = []register.Transfer{{Country: "US", Mechanism: "trust"}} }, "transfers"},
		"negative retention":     {func(n *register.New) { n.RetentionDays = -1 }, "retention_days"},
		"consent validity on a contract": {func(n *register.New) {
			n.LegalBasis, n.NoticeText = register.Contract, ""
		}, "consent_valid_days"},
	} {
		n := newsletter()
		c.mutate(&n)
		_, err := reg.Create(ctx, env.Tenant.ID, n)
		e, ok := errs.As(err)
		if !ok || e.Kind != errs.Invalid || e.Field != c.field {
			t.Errorf("%s: %v; want a problem with field %s", name, err, c.field)
		}
	}
	if ps, err := reg.List(ctx, env.Tenant.ID); err != nil || len(ps) != 0 {
		t.Errorf("refused purposes were stored: %+v %v", ps, err)
	}
	// What the rules allow.
	for name, mutate := range map[string]func(*register.New){
		"health with a condition": func(n *register.New) {
			n.Key, n.DataCategories, n.SpecialConditions = "care", []string{"user.health_and_medical"}, []string{"health_social_care"}
		},
		"custom category": func(n *register.New) { n.Key, n.DataCategories = "shoes", []string{"custom.shoe_size"} },
		"contract without a notice": func(n *register.New) {
			n.Key, n.LegalBasis, n.NoticeText, n.ConsentValidDays = "billing", register.Contract, "", 0
		},
	} {
		n := newsletter()
		mutate(&n)
		if _, err := reg.Create(ctx, env.Tenant.ID, n); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRegister: create, update, notice versions and export, on both engines.
func TestRegister(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		reg := env.Core.Register
		ctx := context.Background()
		p, err := reg.Create(ctx, env.Tenant.ID, newsletter())
		if err != nil {
			t.Fatal(err)
		}
		if p.Notice == nil || p.Notice.Version != 1 || p.Notice.SHA256 != register.NoticeHash(newsletter().NoticeText) {
			t.Errorf("first notice: %+v", p.Notice)
		}
		if _, err := reg.Create(ctx, env.Tenant.ID, newsletter()); !errs.Is(err, errs.Conflict) {
			t.Errorf("same key twice: %v", err)
		}
		got, err := reg.Get(ctx, env.Tenant.ID, "marketing.newsletter")
		if err != nil || got.Name != "Newsletter" || len(got.Transfers) != 1 || got.Transfers[0].Country != "US" ||
			strings.Join(got.DataCategories, ",") != "user.contact.email,user.name" {
			t.Fatalf("get: %+v %v", got, err)
		}

		// A new text is a new version; the old one stays with its hash.
		if _, err := reg.AddNotice(ctx, env.Tenant.ID, p.Key, newsletter().NoticeText); !errs.Is(err, errs.Conflict) {
			t.Errorf("the same text again: %v", err)
		}
		n2, err := reg.AddNotice(ctx, env.Tenant.ID, p.Key, "We email you our newsletter twice a month.")
		if err != nil || n2.Version != 2 {
			t.Fatalf("second notice: %+v %v", n2, err)
		}
		ns, err := reg.Notices(ctx, env.Tenant.ID, p.Key)
		if err != nil || len(ns) != 2 || ns[0].SHA256 != p.Notice.SHA256 || ns[1].SHA256 == ns[0].SHA256 {
			t.Errorf("versions: %+v %v", ns, err)
		}
		if got, _ := reg.Get(ctx, env.Tenant.ID, p.Key); got.Notice.Version != 2 {
			t.Errorf("current notice after a new version: %+v", got.Notice)
		}

		// Updates are checked like creation.
		contract := register.Contract
		if _, err := reg.Update(ctx, env.Tenant.ID, p.Key, register.Patch{LegalBasis: &contract}); !errs.Is(err, errs.Invalid) {
			t.Errorf("contract basis with a consent validity: %v", err)
		}
		zero, name := 0, "Monthly newsletter"
		u, err := reg.Update(ctx, env.Tenant.ID, p.Key, register.Patch{LegalBasis: &contract, ConsentValidDays: &zero, Name: &name})
		if err != nil || u.LegalBasis != register.Contract || u.Name != name || u.RetentionDays != 730 {
			t.Errorf("update: %+v %v", u, err)
		}
		billing := newsletter()
		billing.Key, billing.LegalBasis, billing.NoticeText, billing.ConsentValidDays = "billing", register.Contract, "", 0
		if _, err := reg.Create(ctx, env.Tenant.ID, billing); err != nil {
			t.Fatal(err)
		}
		consent := register.Consent
		if _, err := reg.Update(ctx, env.Tenant.ID, "billing", register.Patch{LegalBasis: &consent}); !errs.Is(err, errs.Invalid) {
			t.Errorf("to consent without a notice: %v", err)
		}
		if _, err := reg.Update(ctx, env.Tenant.ID, "nope", register.Patch{Name: &name}); !errs.Is(err, errs.NotFound) {
			t.Errorf("unknown key: %v", err)
		}

		// Export: JSON with the controller, CSV a second tool reads.
		var js bytes.Buffer
		if err := reg.Export(ctx, env.Tenant.ID, "Acme Ltd", "json", &js); err != nil {
			t.Fatal(err)
		}
		var rec register.Record
		if err := json.Unmarshal(js.Bytes(), &rec); err != nil || rec.Controller != "Acme Ltd" || len(rec.Purposes) != 2 ||
			rec.TaxonomyVersion == "" || rec.Purposes[0].Key != "billing" {
			t.Errorf("json export: %v %s", err, js.Bytes())
		}
		var cs bytes.Buffer
		if err := reg.Export(ctx, env.Tenant.ID, "Acme Ltd", "csv", &cs); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&cs).ReadAll()
		if err != nil || len(rows) != 3 || rows[0][0] != "key" || rows[2][0] != "marketing.newsletter" ||
			rows[2][8] != "US (standard_contractual_clauses)" || rows[2][11] != "2" {
			t.Errorf("csv export: %v %q", err, rows)
		}
		if err := reg.Export(ctx, env.Tenant.ID, "Acme Ltd", "xml", &cs); !errs.Is(err, errs.Invalid) {
			t.Errorf("xml export: %v", err)
		}
	})
}

// TestTaxonomy: the shipped taxonomy has fideslang keys, unique, with the
// special categories of Art. 9 and 10 marked.
func TestTaxonomy(t *testing.T) {
	tx := register.Shipped()
	seen := map[string]bool{}
	special := map[string]bool{}
	for _, c := range append(tx.DataCategories, tx.SubjectCategories...) {
		if seen[c.Key] || c.Name == "" {
			t.Errorf("duplicate or unnamed key %q", c.Key)
		}
		seen[c.Key] = true
		if c.Special != "" {
			special[c.Key] = true
		}
	}
	for _, k := range []string{"user.contact.email", "user.name", "user.device.ip_address", "customer", "employee"} {
		if !seen[k] {
			t.Errorf("taxonomy lacks %s", k)
		}
	}
	for _, k := range []string{"user.health_and_medical", "user.biometric", "user.genetic", "user.demographic.political_opinion",
		"user.demographic.religious_belief", "user.demographic.sexual_orientation", "user.demographic.race_ethnicity",
		"user.demographic.trade_union_membership", "user.criminal_history"} {
		if !special[k] {
			t.Errorf("%s is not marked special", k)
		}
	}
}
