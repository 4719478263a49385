package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
)

// The public privacy pages under /privacy/{tenant}/: where the people whose
// data a tenant holds answer a consent request or withdraw a consent, from
// a link mailed or handed to them. Plain HTML forms, no script; opening a
// page never changes anything (mail scanners open links), only the form's
// POST does.

//go:embed pages
var pageFS embed.FS

var (
	pageCSS, _ = pageFS.ReadFile("pages/style.css")
	// pageCSP allows the pages' one stylesheet and form posts to themselves.
	pageCSP = func() string {
		h := sha256.Sum256(pageCSS)
		return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) +
			"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	}()
)

// parsePages parses every public page once, at start-up (New).
func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"consent", "answered", "withdraw", "error", "portal", "intake", "confirm", "download", "email"} {
		t, err := template.ParseFS(pageFS, "pages/page.html", "pages/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// page renders a public page.
func (a *API) page(w http.ResponseWriter, r *http.Request, code int, name, title string, data map[string]any) error {
	if data == nil {
		data = map[string]any{}
	}
	data["Title"], data["CSS"] = title, template.CSS(pageCSS)
	var b bytes.Buffer
	if err := a.pages[name].ExecuteTemplate(&b, "page", data); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.WriteHeader(code)
	_, err := w.Write(b.Bytes())
	return err
}

// pageError renders err as a page: the people who open these links read
// pages, not problem documents. Server faults stay problem+json.
func (a *API) pageError(w http.ResponseWriter, r *http.Request, err error) error {
	code := httpio.StatusOf(err)
	if code >= 500 {
		return err
	}
	detail := err.Error()
	if e, ok := errs.As(err); ok {
		detail = e.Detail
		if e.Field != "" {
			detail = e.Field + ": " + detail
		}
	}
	return a.page(w, r, code, "error", http.StatusText(code), map[string]any{"Detail": detail})
}

func (a *API) viewConsentLink(w http.ResponseWriter, r *http.Request) error {
	p, err := a.consent.ViewLink(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "consent", "Your consent, please", map[string]any{"Page": p})
}

func (a *API) answerConsentLink(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		return a.pageError(w, r, errs.Field("answer", "a form with answer=grant or answer=refuse"))
	}
	version, _ := strconv.Atoi(r.PostForm.Get("notice_version"))
	if version <= 0 {
		return a.pageError(w, r, errs.Field("notice_version", "the version of the notice shown"))
	}
	rec, err := a.consent.AnswerLink(r.Context(), r.PathValue("tenant"), r.PathValue("token"), r.PostForm.Get("answer"),
		version, clientIP(r, a.proxies), r.UserAgent())
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "answered", "Thank you", map[string]any{
		"Granted": rec.Action == consent.Grant, "Receipt": rec.Receipt != "", "WithdrawURL": rec.WithdrawURL})
}

func (a *API) viewWithdrawLink(w http.ResponseWriter, r *http.Request) error {
	p, err := a.consent.ViewWithdraw(r.Context(), r.PathValue("tenant"), r.PathValue("purpose"), r.PathValue("token"))
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "withdraw", "Withdraw your consent", map[string]any{"Page": p})
}

func (a *API) withdrawByLink(w http.ResponseWriter, r *http.Request) error {
	tenant, purpose, token := r.PathValue("tenant"), r.PathValue("purpose"), r.PathValue("token")
	done, err := a.consent.WithdrawByLink(r.Context(), tenant, purpose, token, clientIP(r, a.proxies), r.UserAgent())
	if err != nil {
		return a.pageError(w, r, err)
	}
	p, err := a.consent.ViewWithdraw(r.Context(), tenant, purpose, token)
	if err != nil {
		return a.pageError(w, r, err)
	}
	return a.page(w, r, http.StatusOK, "withdraw", "Withdraw your consent", map[string]any{"Page": p, "Done": done})
}
