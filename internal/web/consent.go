package web

import (
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
)

// Consent: where the tenant's contacts stand, per purpose, and the
// history of every grant and withdrawal, by day and purpose, with its
// CSV — the proof a controller shows.

// consentData is what the consent page shows.
type consentData struct {
	Report   []consent.PurposeCounts
	Purposes []register.Purpose // consent-based, for the history's filter
	Events   []consent.Event
	Names    map[string]string // purpose names by key
	Query    url.Values
	Filters  bool
	Newer    string // the newest page, when not on it
	Older    string // the next page
	CSV      string // the filtered history as CSV
	CanEdit  bool
}

func (c *Console) consentReportPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ctx := r.Context()
	q := r.URL.Query()
	f := &form{Values: q}
	hf, csv, err := c.consentFilter(r, f)
	if err != nil {
		return err
	}
	d := consentData{Query: q, Names: map[string]string{}, CanEdit: p.Can("subjects:write"), CSV: csv,
		Filters: q.Get("from") != "" || q.Get("to") != "" || q.Get("purpose") != ""}
	if d.Report, err = c.consent.Report(ctx, p.TenantID); err != nil {
		return err
	}
	ps, err := c.register.List(ctx, p.TenantID)
	if err != nil {
		return err
	}
	for _, pu := range ps {
		d.Names[pu.Key] = pu.Name
		if pu.LegalBasis == register.Consent {
			d.Purposes = append(d.Purposes, pu)
		}
	}
	code := http.StatusOK
	if len(f.Problems) > 0 {
		code = http.StatusUnprocessableEntity
	} else {
		hf.Cursor, hf.Limit = q.Get("cursor"), perPage
		es, next, err := c.consent.History(ctx, p.TenantID, hf)
		if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
			q.Del("cursor")
			q.Del(e.Field)
			return c.redirect(w, r, "/consent?"+q.Encode(), "")
		} else if err != nil {
			return err
		}
		d.Events = es
		d.Newer, d.Older = cursorLinks("/consent", q, next, "#history")
	}
	return c.render(w, r, code, "consent", &view{Title: "Consent", Form: f, Data: d})
}

// consentFilter reads the history's filters of the page's query — days
// in the organisation's time zone, a purpose — and answers the link to
// the same as CSV.
func (c *Console) consentFilter(r *http.Request, f *form) (consent.HistoryFilter, string, error) {
	t, err := c.tenants.ByID(r.Context(), signedIn(r).TenantID)
	if err != nil {
		return consent.HistoryFilter{}, "", err
	}
	var hf consent.HistoryFilter
	hf.From, hf.To = f.days(t.Location())
	hf.Purpose = f.Value("purpose")
	link := url.Values{}
	for _, k := range []string{"from", "to", "purpose"} {
		if v := f.Value(k); v != "" {
			link.Set(k, v)
		}
	}
	return hf, "/consent/history.csv?" + link.Encode(), nil
}

// consentCSV downloads the history the filters select.
func (c *Console) consentCSV(w http.ResponseWriter, r *http.Request) error {
	f := &form{Values: r.URL.Query()}
	hf, _, err := c.consentFilter(r, f)
	if err != nil {
		return err
	}
	if len(f.Problems) > 0 {
		return errs.Field(f.Problems[0].Field, "%s", f.Problems[0].Message)
	}
	return c.api.SendConsentHistory(w, r, hf)
}
