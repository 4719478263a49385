package api

import (
	"bytes"
	"errors"
	"mime"
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/subject"
)

// listUsers answers a page of accounts, oldest first, with the total
// that match: ?email= (exact), ?name= (whole words), ?role=, ?status=,
// ?limit= (50), ?cursor=.
func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "email", "name", "role", "status", "locked", "second_factor", "limit", "cursor")
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit")
	if err != nil {
		return err
	}
	uq := identity.UserQuery{Email: q.Get("email"), Name: q.Get("name"), Role: q.Get("role"), Status: q.Get("status"), Limit: limit}
	switch q.Get("locked") {
	case "", "false":
	case "true":
		uq.Locked = true
	default:
		return errs.Field("locked", "true or false")
	}
	switch v := q.Get("second_factor"); v {
	case "":
	case "true", "false":
		has := v == "true"
		uq.SecondFactor = &has
	default:
		return errs.Field("second_factor", "true or false")
	}
	if c := q.Get("cursor"); c != "" {
		if uq.Offset, err = strconv.Atoi(c); err != nil || uq.Offset < 1 {
			return errs.Field("cursor", "not a cursor of this list")
		}
	}
	page, err := a.identity.Users(r.Context(), principal(r).TenantID, uq)
	if err != nil {
		return err
	}
	out := struct {
		Page[identity.UserRow]
		Total int `json:"total"`
	}{Page[identity.UserRow]{Items: page.Items}, page.Total}
	if next := uq.Offset + len(page.Items); next < page.Total {
		out.NextCursor = strconv.Itoa(next)
	}
	httpio.JSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	u, err := a.identity.CreateUserAs(r.Context(), principal(r), identity.NewUser{Email: in.Email, Role: in.Role})
	if err != nil {
		return err
	}
	acc, err := a.identity.Account(r.Context(), principal(r).TenantID, u.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	httpio.JSON(w, http.StatusCreated, acc)
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	acc, err := a.identity.Account(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, acc)
	return nil
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	var p identity.UserPatch
	if err := httpio.Decode(w, r, &p); err != nil {
		return err
	}
	if _, err := a.identity.UpdateUser(r.Context(), principal(r), r.PathValue("id"), p); err != nil {
		return err
	}
	return a.getUser(w, r)
}

func (a *API) unlockUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.Unlock(r.Context(), principal(r).TenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resetFactors removes every second factor of a person who lost them all
// (identity.ResetFactors has the rules).
func (a *API) resetFactors(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.ResetFactors(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listTenantTokens lists every live token of the tenant with its owner.
func (a *API) listTenantTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.identity.TenantTokens(r.Context(), principal(r).TenantID)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[identity.OwnedToken]{Items: ts})
	return nil
}

// revokeTenantToken revokes any token of the tenant (rank rule).
func (a *API) revokeTenantToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.RevokeTokenOf(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) invite(w http.ResponseWriter, r *http.Request) error {
	var in identity.Invitation
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	if err := a.identity.Invite(r.Context(), principal(r), in); err != nil {
		return err
	}
	httpio.JSON(w, http.StatusAccepted, map[string]string{"detail": "The invitation is on its way."})
	return nil
}

func (a *API) resendInvitation(w http.ResponseWriter, r *http.Request) error {
	if err := a.identity.ResendInvitation(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (a *API) exportUsers(w http.ResponseWriter, r *http.Request) error {
	format := formatParam(r)
	var buf bytes.Buffer // the export is small (one line per account); errors must not follow a 200
	if err := a.identity.ExportUsers(r.Context(), principal(r), format, &buf); err != nil {
		return err
	}
	return a.attachment(w, "users", format, buf.Bytes())
}

// formatParam is ?format=, json by default.
func formatParam(r *http.Request) string {
	if f := r.URL.Query().Get("format"); f != "" {
		return f
	}
	return "json"
}

// attachment answers an export (built in full first, so that an error
// never follows a 200) as a file named after what and the time.
func (a *API) attachment(w http.ResponseWriter, what, format string, body []byte) error {
	ctype := "application/json"
	if format == "csv" {
		ctype = "text/csv; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+what+`-`+a.now().UTC().Format("20060102T150405Z")+`.`+format+`"`)
	_, err := w.Write(body)
	return err
}

// maxImport bounds an uploaded user file.
const maxImport = 5 << 20

func (a *API) importUsers(w http.ResponseWriter, r *http.Request) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/csv" {
		return errs.Field("Content-Type", "send the file as text/csv")
	}
	dryRun := false
	switch v := r.URL.Query().Get("dry_run"); v {
	case "", "false":
	case "true":
		dryRun = true
	default:
		return errs.Field("dry_run", "true or false")
	}
	body := http.MaxBytesReader(w, r.Body, maxImport)
	res, err := a.identity.ImportUsers(r.Context(), principal(r), body, dryRun)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return errs.E(errs.TooLarge, "the file is larger than %d MiB", maxImport>>20)
	}
	if err != nil {
		return err
	}
	code := http.StatusCreated
	if dryRun {
		code = http.StatusOK
	}
	httpio.JSON(w, code, res)
	return nil
}

// eraseUser erases an account and the person behind it (identity's rules),
// optionally answering a verified erasure request about them.
func (a *API) eraseUser(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	u, err := a.identity.UserByID(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	c, err := a.erase(w, r, u.SubjectID, func(in subject.EraseInput) (subject.Certificate, error) {
		return a.identity.EraseUser(r.Context(), p, u.ID, in)
	})
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}
