package api

import (
	"context"
	"net/http"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/rights"
)

// The privacy portal, /privacy/{tenant}: people ask for their rights
// there, confirm by the link mailed to them, and — for an access or
// portability request — download their data by a single-use link.

// portalType is a request type as the portal's form offers it.
type portalType struct{ Key, Title string }

func (a *API) viewPortal(w http.ResponseWriter, r *http.Request) error {
	p, err := a.rights.Portal(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	types := make([]portalType, 0, len(p.Types))
	for _, t := range p.Types {
		types = append(types, portalType{t, rights.TypeTitle(t)})
	}
	return a.page(w, r, http.StatusOK, "portal", "Your personal data at "+p.Organisation,
		map[string]any{"Portal": p, "Types": types, "Slug": r.PathValue("tenant")})
}

func (a *API) portalIntake(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return a.pageError(w, r, errs.Field("type", "a form with type, email and details, at most 16 KiB"))
	}
	slug := r.PathValue("tenant")
	err := a.rights.Intake(r.Context(), slug, rights.PortalInput{Type: r.PostForm.Get("type"), Email: r.PostForm.Get("email"),
		Details: r.PostForm.Get("details"), Purposes: r.PostForm["purposes"]})
	if err != nil {
		return a.pageError(w, r, err)
	}
	p, err := a.rights.Portal(r.Context(), slug)
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusAccepted, "intake", "Check your mailbox", map[string]any{"Organisation": p.Organisation})
}

func (a *API) viewConfirmLink(w http.ResponseWriter, r *http.Request) error {
	p, err := a.rights.ViewIntake(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "confirm", "Confirm your request", map[string]any{"Page": p})
}

func (a *API) confirmLink(w http.ResponseWriter, r *http.Request) error {
	slug, token := r.PathValue("tenant"), r.PathValue("token")
	page, err := a.rights.ViewIntake(r.Context(), slug, token)
	if err != nil {
		return a.pageError(w, r, err)
	}
	req, err := a.rights.ConfirmIntake(r.Context(), slug, token, clientIP(r, a.proxies), r.UserAgent())
	if err != nil {
		return a.pageError(w, r, err)
	}
	t, err := a.tenants.BySlug(r.Context(), slug)
	if err != nil {
		return err
	}
	return a.page(w, r, http.StatusCreated, "confirm", "Your request is sent", map[string]any{"Request": req,
		"Organisation": page.Organisation, "Title": page.Title, "Mailed": true,
		"Due": req.DueAt.In(t.Location()).Format("2 January 2006")})
}

func (a *API) viewDownload(w http.ResponseWriter, r *http.Request) error {
	d, err := a.rights.FindDownload(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "download", "Your personal data", map[string]any{"Page": d})
}

// download answers the zip of a download link, made now and handed out
// only once the link is spent, so that a failure never costs the link.
func (a *API) download(w http.ResponseWriter, r *http.Request) error {
	d, err := a.rights.FindDownload(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	key, err := a.subjects.Key(r.Context(), d.TenantID, d.SubjectID)
	if err != nil {
		return a.pageError(w, r, err)
	}
	ctx := audit.WithActor(r.Context(), audit.Actor{Type: audit.ActorSubject, ID: d.SubjectID, SubjectID: d.SubjectID,
		IP: clientIP(r, a.proxies), UserAgent: r.UserAgent(), Key: key})
	body := newDownload(w, zipHeader("personal-data-"+a.now().UTC().Format("20060102")+".zip"))
	out, err := a.export.Export(ctx, d.TenantID, d.SubjectID, body, func(ctx context.Context) error { return a.rights.SpendDownload(ctx, d) })
	if err != nil {
		if body.started() {
			a.cut(r, "personal data download", err)
		}
		return a.pageError(w, r, err)
	}
	if err := a.rights.Downloaded(ctx, d, out.SHA256, out.Bytes); err != nil {
		a.logger.ErrorContext(ctx, "download not recorded", "request_id", httpio.RequestID(ctx), "error", err.Error())
	}
	return nil
}
