package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/consent"
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
	httpio.JSON(w, http.StatusOK, map[string]any{"campaigns": cs})
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
