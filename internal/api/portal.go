package api

import (
	"context"
	"net/http"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/rights"
)

// SendDownload answers the zip of the download link d — the privacy
// portal's page posts here — made now and handed out only once the link
// is spent, so that a failure never costs the link. An error before the
// first byte is returned for the page to show; one after cuts the
// transfer.
func (a *API) SendDownload(w http.ResponseWriter, r *http.Request, d rights.Download) error {
	key, err := a.subjects.Key(r.Context(), d.TenantID, d.SubjectID)
	if err != nil {
		return err
	}
	ctx := audit.WithActor(r.Context(), audit.Actor{Type: audit.ActorSubject, ID: d.SubjectID, SubjectID: d.SubjectID,
		IP: clientIP(r, a.proxies), UserAgent: r.UserAgent(), Key: key})
	body := newDownload(w, zipHeader("personal-data-"+a.now().UTC().Format("20060102")+".zip"))
	out, err := a.export.Export(ctx, d.TenantID, d.SubjectID, body, func(ctx context.Context) error { return a.rights.SpendDownload(ctx, d) })
	if err != nil {
		if body.started() {
			a.cut(r, "personal data download", err)
		}
		return err
	}
	if err := a.rights.Downloaded(ctx, d, out.SHA256, out.Bytes); err != nil {
		a.logger.ErrorContext(ctx, "download not recorded", "request_id", httpio.RequestID(ctx), "error", err.Error())
	}
	return nil
}
