package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/retention"
)

// Retention: the policies that erase or anonymise contacts on time, a
// preview of who they would reach and why, running them now, the runs
// so far; and when a bouncing address makes a contact inactive.

// retentionData is what the retention page shows.
type retentionData struct {
	Settings retention.Settings
	Policies []retention.Policy
	Runs     []audit.Entry // the latest runs, when the viewer may read the trail
	Report   *retention.Report
	Triggers map[string]retention.Policy // the report's policies by id, for why
	CanEdit  bool
	CanAudit bool
}

func (c *Console) retentionPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.retention(r)
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"inactive_after_bounce_days": {strconv.Itoa(d.Settings.InactiveAfterBounceDays)}}}
	return c.render(w, r, http.StatusOK, "retention", &view{Title: "Retention", Form: f, Data: d})
}

func (c *Console) retention(r *http.Request) (retentionData, error) {
	p := signedIn(r)
	ctx := r.Context()
	d := retentionData{CanEdit: p.Can("settings:write"), CanAudit: p.Can("audit:read"), Triggers: map[string]retention.Policy{}}
	var err error
	if d.Settings, err = c.retain.Settings(ctx, p.TenantID); err != nil {
		return d, err
	}
	if d.Policies, err = c.retain.Policies(ctx, p.TenantID); err != nil {
		return d, err
	}
	for _, pol := range d.Policies {
		d.Triggers[pol.ID] = pol
	}
	if d.CanAudit {
		if d.Runs, _, err = c.api.ReadAudit(r, audit.Filter{Action: "retention.run", Limit: 10}); err != nil {
			return d, err
		}
	}
	return d, nil
}

func (c *Console) saveRetentionSettings(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(f.Value("inactive_after_bounce_days")))
	if err != nil {
		f.add("inactive_after_bounce_days", "Enter a whole number of days.")
	} else if _, err := c.retain.UpdateSettings(r.Context(), signedIn(r).TenantID, retention.Settings{InactiveAfterBounceDays: n}); err != nil {
		if !f.refused(err, "inactive_after_bounce_days", map[string]string{"inactive_after_bounce_days": "number of days"}) {
			return err
		}
	} else {
		return c.redirect(w, r, "/retention", "saved")
	}
	d, err := c.retention(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "retention", &view{Title: "Retention", Form: f, Data: d})
}

var policyNouns = map[string]string{"name": "name", "status": "contacts it applies to", "trigger": "starting point",
	"period_days": "period", "action": "action"}

func (c *Console) newPolicyPage(w http.ResponseWriter, r *http.Request) error {
	f := &form{Values: url.Values{"status": {retention.AnyStatus}, "trigger": {retention.LastActivity}, "action": {retention.Erase}}}
	return c.render(w, r, http.StatusOK, "policy-new", &view{Title: "Add a retention policy", Back: "/retention", Form: f})
}

func (c *Console) createPolicy(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	name, status, trigger, action := f.Value("name"), f.Value("status"), f.Value("trigger"), f.Value("action")
	days, err := strconv.Atoi(strings.TrimSpace(f.Value("period_days")))
	if err != nil {
		f.add("period_days", "Enter the period as a whole number of days.")
	}
	if len(f.Problems) == 0 {
		_, err := c.retain.CreatePolicy(r.Context(), signedIn(r).TenantID, retention.PolicyInput{Name: &name, Status: &status,
			Trigger: &trigger, PeriodDays: &days, Action: &action})
		if err == nil {
			return c.redirect(w, r, "/retention", "policy-added")
		}
		if !f.refused(err, "name", policyNouns) {
			return err
		}
	}
	return c.render(w, r, http.StatusUnprocessableEntity, "policy-new", &view{Title: "Add a retention policy", Back: "/retention", Form: f})
}

// enablePolicy turns the policy in the path on or off.
func (c *Console) enablePolicy(on bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := c.retain.UpdatePolicy(r.Context(), signedIn(r).TenantID, r.PathValue("id"), retention.PolicyInput{Enabled: &on}); err != nil {
			return err
		}
		return c.redirect(w, r, "/retention", map[bool]string{true: "policy-enabled", false: "policy-disabled"}[on])
	}
}

func (c *Console) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := c.retain.DeletePolicy(r.Context(), signedIn(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/retention", "policy-deleted")
}

// previewRetention shows who a run would reach now, and why; nothing
// changes.
func (c *Console) previewRetention(w http.ResponseWriter, r *http.Request) error {
	d, err := c.retention(r)
	if err != nil {
		return err
	}
	rep, err := c.retain.Run(r.Context(), signedIn(r).TenantID, true)
	if err != nil {
		return err
	}
	d.Report = &rep
	return c.render(w, r, http.StatusOK, "retention-preview", &view{Title: "Who a run would reach now", Back: "/retention", Data: d})
}

func (c *Console) runRetention(w http.ResponseWriter, r *http.Request) error {
	if _, err := c.retain.Run(r.Context(), signedIn(r).TenantID, false); err != nil {
		return err
	}
	return c.redirect(w, r, "/retention", "retention-ran")
}

// policyRule says a policy as a sentence: "Erase contacts 365 days after
// their last activity".
func policyRule(p retention.Policy) string {
	who := map[string]string{"active": "active contacts", "inactive": "inactive contacts"}[p.Status]
	if who == "" {
		who = "contacts"
	}
	what := map[string]string{retention.Erase: "Erase ", retention.Anonymise: "Anonymise "}[p.Action]
	since := map[string]string{retention.Created: "they were added", retention.LastActivity: "their last activity",
		retention.ConsentWithdrawn: "they withdrew their consent (with no valid consent left)", retention.InactiveSince: "they became inactive"}[p.Trigger]
	return what + who + " " + strconv.Itoa(p.PeriodDays) + " days after " + since
}
