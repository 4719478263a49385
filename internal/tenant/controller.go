package tenant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Controller is who a tenant is as a controller of personal data, as the
// people it holds data about must be told (GDPR Art. 13(1)(a)(b), 14(1),
// 15(1)) and its DPO's contact published (Art. 37(7)). Empty fields are
// not given. It is sealed under the tenant's data key: it may name people.
type Controller struct {
	LegalName string `json:"legal_name"` // "" : the organisation's name in Custodia
	Address   string `json:"address"`    // postal address, lines separated by newlines
	Email     string `json:"email"`      // where people write about their data
	Phone     string `json:"phone"`
	// The data protection officer (Art. 37–39), if one is designated.
	DPOName    string `json:"dpo_name"`
	DPOEmail   string `json:"dpo_email"`
	DPOPhone   string `json:"dpo_phone"`
	DPOAddress string `json:"dpo_address"`
	// The representative in the Union of a controller outside it (Art. 27).
	RepresentativeName    string `json:"representative_name"`
	RepresentativeContact string `json:"representative_contact"`
	PrivacyPolicyURL      string `json:"privacy_policy_url"`
}

// check validates and trims c.
func (c *Controller) check() error {
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"legal_name", &c.LegalName, 200}, {"address", &c.Address, 1000}, {"email", &c.Email, 254}, {"phone", &c.Phone, 40},
		{"dpo_name", &c.DPOName, 200}, {"dpo_email", &c.DPOEmail, 254}, {"dpo_phone", &c.DPOPhone, 40}, {"dpo_address", &c.DPOAddress, 1000},
		{"representative_name", &c.RepresentativeName, 200}, {"representative_contact", &c.RepresentativeContact, 1000},
		{"privacy_policy_url", &c.PrivacyPolicyURL, 2000}} {
		*f.v = strings.TrimSpace(strings.ReplaceAll(*f.v, "\r\n", "\n"))
		if utf8.RuneCountInString(*f.v) > f.max || !utf8.ValidString(*f.v) {
			return errs.Field(f.name, "at most %d characters", f.max)
		}
		if !strings.Contains(f.name, "address") && !strings.Contains(f.name, "contact") && strings.ContainsAny(*f.v, "\n\t") {
			return errs.Field(f.name, "one line")
		}
	}
	for _, f := range []struct{ name, v string }{{"email", c.Email}, {"dpo_email", c.DPOEmail}} {
		if f.v != "" {
			if a, err := mail.ParseAddress(f.v); err != nil || a.Address != f.v {
				return errs.Field(f.name, "an email address, like privacy@example.com")
			}
		}
	}
	if c.PrivacyPolicyURL != "" {
		u, err := url.Parse(c.PrivacyPolicyURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errs.Field("privacy_policy_url", "a web address starting with https://")
		}
	}
	if c.DPOName != "" && c.DPOEmail == "" && c.DPOPhone == "" && c.DPOAddress == "" {
		return errs.Field("dpo_email", "a way to reach the data protection officer: email, phone or address")
	}
	if c.RepresentativeName != "" && c.RepresentativeContact == "" {
		return errs.Field("representative_contact", "how to reach the representative")
	}
	return nil
}

// Controller answers the tenant's controller details (empty when never
// set).
func (s *Service) Controller(ctx context.Context, tenantID string) (Controller, error) {
	var ct []byte
	err := s.db.Read().QueryRow(ctx, "SELECT controller_ct FROM tenants WHERE id = ?", tenantID).Scan(&ct)
	if errors.Is(err, sql.ErrNoRows) {
		return Controller{}, errs.E(errs.NotFound, "no such tenant")
	}
	if err != nil || len(ct) == 0 {
		return Controller{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return Controller{}, err
	}
	pt, err := dk.Open("tenants", "controller_ct", tenantID, ct)
	if err != nil {
		return Controller{}, fmt.Errorf("controller details: %w", err)
	}
	var c Controller
	return c, json.Unmarshal(pt, &c)
}

// SetController replaces the tenant's controller details. Only the names
// of the fields that changed are audited.
func (s *Service) SetController(ctx context.Context, tenantID string, c Controller) (Controller, error) {
	if err := c.check(); err != nil {
		return Controller{}, err
	}
	old, err := s.Controller(ctx, tenantID)
	if err != nil {
		return Controller{}, err
	}
	var changed []string
	ob, _ := json.Marshal(old)
	nb, err := json.Marshal(c)
	if err != nil {
		return Controller{}, err
	}
	var om, nm map[string]string
	_ = json.Unmarshal(ob, &om)
	_ = json.Unmarshal(nb, &nm)
	for k, v := range nm {
		if om[k] != v {
			changed = append(changed, k)
		}
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return Controller{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE tenants SET controller_ct = ? WHERE id = ?", dk.Seal("tenants", "controller_ct", tenantID, nb), tenantID)
		return err
	}, audit.Event{Action: "tenant.controller", TargetType: "tenant", TargetID: tenantID, Details: map[string]any{"changed": slices.Sorted(slices.Values(changed))}})
	return c, err
}

// Lines says who the controller is, for the end of a mail or a page:
// the name and address, where to write, the DPO and the representative.
func (c Controller) Lines(orgName string) []string {
	lines := []string{or(c.LegalName, orgName)}
	if c.Address != "" {
		lines = append(lines, strings.ReplaceAll(c.Address, "\n", ", "))
	}
	if contact := join(c.Email, c.Phone); contact != "" {
		lines = append(lines, "Contact: "+contact)
	}
	if dpo := join(c.DPOName, c.DPOEmail, c.DPOPhone, strings.ReplaceAll(c.DPOAddress, "\n", ", ")); dpo != "" {
		lines = append(lines, "Data protection officer: "+dpo)
	}
	if c.RepresentativeName != "" {
		lines = append(lines, "Representative in the EU: "+join(c.RepresentativeName, strings.ReplaceAll(c.RepresentativeContact, "\n", ", ")))
	}
	if c.PrivacyPolicyURL != "" {
		lines = append(lines, "Privacy policy: "+c.PrivacyPolicyURL)
	}
	return lines
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Footer is how a mail sent for the tenant ends: who sent it, and the
// controller's details when they are set. An error reading them leaves
// them out: a mail is never held back for its footer.
func (s *Service) Footer(ctx context.Context, t Tenant) string {
	out := "— sent for " + t.Name + " by Custodia\n"
	c, err := s.Controller(ctx, t.ID)
	if err != nil || c == (Controller{}) {
		return out
	}
	return out + "\n" + strings.Join(c.Lines(t.Name), "\n") + "\n"
}
