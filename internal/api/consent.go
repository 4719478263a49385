package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
)

func (a *API) recordConsent(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Purpose       string `json:"purpose"`
		Action        string `json:"action"`
		Method        string `json:"method"`
		NoticeVersion int    `json:"notice_version"`
		Source        string `json:"source"`
		IP            string `json:"ip"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	rec, err := a.consent.Record(r.Context(), principal(r).TenantID, r.PathValue("id"), consent.Input{Purpose: in.Purpose,
		Action: in.Action, Method: in.Method, NoticeVersion: in.NoticeVersion, Source: in.Source, IP: in.IP})
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, rec)
	return nil
}

func (a *API) consentLedger(w http.ResponseWriter, r *http.Request) error {
	if err := a.subjects.Usable(r.Context(), principal(r).TenantID, r.PathValue("id"), "consent.read"); err != nil {
		return err
	}
	l, err := a.consent.Ledger(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, l)
	return nil
}

func (a *API) verifyConsent(w http.ResponseWriter, r *http.Request) error {
	v, err := a.consent.Verify(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, v)
	return nil
}

func (a *API) consentReceipt(w http.ResponseWriter, r *http.Request) error {
	if err := a.subjects.Usable(r.Context(), principal(r).TenantID, r.PathValue("id"), "consent.read"); err != nil {
		return err
	}
	rc, err := a.consent.Receipt(r.Context(), principal(r).TenantID, r.PathValue("id"), r.PathValue("event"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, map[string]string{"receipt": rc})
	return nil
}

// receiptKeys publishes the keys that verify a tenant's consent receipts.
func (a *API) receiptKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := a.consent.Keys(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	httpio.JSON(w, http.StatusOK, ks)
	return nil
}

func (a *API) startCampaign(w http.ResponseWriter, r *http.Request) error {
	var in consent.CampaignInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.consent.StartCampaign(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, c)
	return nil
}

// consentReport counts, per consent-based purpose, the active contacts
// with a valid, expired or withdrawn consent, or none.
func (a *API) consentReport(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	rep, err := a.consent.Report(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[consent.PurposeCounts]{Items: rep})
	return nil
}

// consentHistory pages through the tenant's consent events, newest first,
// or streams them all as CSV.
func (a *API) consentHistory(w http.ResponseWriter, r *http.Request) error {
	f, format, err := a.ConsentHistoryFilter(r)
	if err != nil {
		return err
	}
	if format == "csv" {
		return a.SendConsentHistory(w, r, f)
	}
	es, next, err := a.consent.History(r.Context(), principal(r).TenantID, f)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[consent.Event]{Items: nonNil(es), NextCursor: next})
	return nil
}

// ConsentHistoryFilter reads the consent history's filters from r's query:
// from, to (RFC 3339), purpose, cursor, limit; and format (json or csv).
func (a *API) ConsentHistoryFilter(r *http.Request) (consent.HistoryFilter, string, error) {
	q, err := query(r, "from", "to", "purpose", "cursor", "limit", "format")
	if err != nil {
		return consent.HistoryFilter{}, "", err
	}
	f := consent.HistoryFilter{Purpose: q.Get("purpose"), Cursor: q.Get("cursor")}
	if f.From, f.To, err = timeRange(q); err != nil {
		return f, "", err
	}
	if f.Limit, err = intParam(q, "limit"); err != nil {
		return f, "", err
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		return f, "", errs.Field("format", "json or csv")
	}
	if format == "csv" && (f.Cursor != "" || f.Limit != 0) {
		return f, "", errs.Field("format", "csv exports every matching event; drop cursor and limit")
	}
	return f, format, nil
}

// SendConsentHistory streams the consent events f selects as CSV; a bad
// filter is answered as an error, since nothing is sent before the first
// page is read.
func (a *API) SendConsentHistory(w http.ResponseWriter, r *http.Request, f consent.HistoryFilter) error {
	d := newDownload(w, func(h http.Header) {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="consent-history-`+a.now().UTC().Format("20060102T150405Z")+`.csv"`)
	})
	if err := a.consent.WriteHistoryCSV(r.Context(), d, principal(r).TenantID, f); err != nil {
		if d.started() {
			a.cut(r, "consent history csv", err)
		}
		return err
	}
	return nil
}

// previewCampaign says whom a campaign would reach, changing nothing.
func (a *API) previewCampaign(w http.ResponseWriter, r *http.Request) error {
	var in consent.CampaignInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	pv, err := a.consent.PreviewCampaign(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, pv)
	return nil
}

func (a *API) listCampaigns(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.consent.Campaigns(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, map[string]any{"campaigns": nonNil(cs)})
	return nil
}

func (a *API) getCampaign(w http.ResponseWriter, r *http.Request) error {
	c, err := a.consent.Campaign(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}
