package web

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// Users: the tenant's accounts, paged on the server with filters in the
// URL; a person's page with what an administrator can change; inviting.

// perPage is how many rows a list page shows.
const perPage = 50

// usersData is what the users list shows.
type usersData struct {
	Page    identity.UserPage
	Query   url.Values // the filters, as the URL holds them
	Filters []activeFilter
	Pager   pager
	CanEdit bool
}

// activeFilter is a filter in use, with the URL that removes it.
type activeFilter struct{ Label, Remove string }

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	q := r.URL.Query()
	pageNo, _ := strconv.Atoi(q.Get("page"))
	if pageNo < 1 {
		pageNo = 1
	}
	uq := identity.UserQuery{Role: q.Get("role"), Status: q.Get("status"), Offset: (pageNo - 1) * perPage, Limit: perPage,
		Locked: q.Get("locked") == "yes"}
	if v := q.Get("second_factor"); v == "yes" || v == "no" {
		has := v == "yes"
		uq.SecondFactor = &has
	}
	if who := strings.TrimSpace(q.Get("q")); strings.Contains(who, "@") {
		uq.Email = who
	} else {
		uq.Name = who
	}
	page, err := c.identity.Users(r.Context(), p.TenantID, uq)
	if e, ok := errs.As(err); ok && e.Kind == errs.Invalid { // a filter nobody can mean: the list without it
		q.Del(map[string]string{"email": "q", "name": "q"}[e.Field])
		q.Del(e.Field)
		return c.redirect(w, r, "/users?"+q.Encode(), "")
	}
	if err != nil {
		return err
	}
	if pageNo > 1 && len(page.Items) == 0 { // past the end: the first page
		q.Del("page")
		return c.redirect(w, r, "/users?"+q.Encode(), "")
	}
	d := usersData{Page: page, Query: q, Pager: newPager("/users", q, pageNo, page.Total), CanEdit: p.Can("users:write")}
	for _, f := range []struct{ key, label string }{{"q", "Name or email"}, {"role", "Role"}, {"status", "Status"},
		{"locked", "Locked out"}, {"second_factor", "Second factor"}} {
		if v := q.Get(f.key); v != "" {
			rest := url.Values{}
			for k, vs := range q {
				if k != f.key && k != "page" {
					rest[k] = vs
				}
			}
			d.Filters = append(d.Filters, activeFilter{Label: f.label + ": " + v, Remove: "/users?" + rest.Encode()})
		}
	}
	return c.render(w, r, http.StatusOK, "users", &view{Title: "Users", Data: d})
}

// pager is the numbered pages of a list: "51–100 of 1,240", with gaps.
type pager struct {
	From, To, Total int
	Prev, Next      string
	Pages           []pageLink
}

type pageLink struct {
	Number  int
	Href    string
	Current bool
	Gap     bool
}

func newPager(base string, q url.Values, page, total int) pager {
	last := max(1, (total+perPage-1)/perPage)
	at := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		if n == 1 {
			v.Del("page")
		} else {
			v.Set("page", strconv.Itoa(n))
		}
		if len(v) == 0 {
			return base
		}
		return base + "?" + v.Encode()
	}
	pg := pager{From: min(total, (page-1)*perPage+1), To: min(total, page*perPage), Total: total}
	if page > 1 {
		pg.Prev = at(page - 1)
	}
	if page < last {
		pg.Next = at(page + 1)
	}
	if last == 1 {
		return pg
	}
	for n := 1; n <= last; n++ {
		if n == 1 || n == last || n >= page-2 && n <= page+2 {
			pg.Pages = append(pg.Pages, pageLink{Number: n, Href: at(n), Current: n == page})
		} else if len(pg.Pages) > 0 && !pg.Pages[len(pg.Pages)-1].Gap {
			pg.Pages = append(pg.Pages, pageLink{Gap: true})
		}
	}
	return pg
}

// userData is what a person's page shows.
type userData struct {
	Account  identity.Account
	Lockout  identity.Lockout
	Factors  int
	CanEdit  bool
	Outranks bool // the viewer's role is not below theirs: they may change it
	Self     bool
}

func (c *Console) userPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.user(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "user", &view{Title: or(d.Account.Name, d.Account.Email), Back: "/users", Data: d})
}

// user answers the account in the path as the signed-in person may see it.
func (c *Console) user(r *http.Request) (userData, error) {
	p := signedIn(r)
	ctx := r.Context()
	acc, err := c.identity.Account(ctx, p.TenantID, r.PathValue("id"))
	if err != nil {
		return userData{}, err
	}
	lk, err := c.identity.LockoutOf(ctx, p.TenantID, acc.ID)
	if err != nil {
		return userData{}, err
	}
	ms, err := c.identity.Methods(ctx, p.TenantID, acc.ID)
	if err != nil {
		return userData{}, err
	}
	d := userData{Account: acc, Lockout: lk, CanEdit: p.Can("users:write"), Self: acc.ID == p.UserID,
		Outranks: identity.Rank(p.Role) >= identity.Rank(acc.Role)}
	for _, m := range ms {
		if m != identity.MethodRecovery {
			d.Factors++
		}
	}
	return d, nil
}

func (c *Console) rolePage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.user(r)
	if err != nil {
		return err
	}
	f := &form{Values: url.Values{"role": {d.Account.Role}}}
	return c.render(w, r, http.StatusOK, "user-role", &view{Title: "Change the role of " + or(d.Account.Name, d.Account.Email),
		Back: "/users/" + d.Account.ID, Form: f, Data: d})
}

func (c *Console) setRole(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	role := f.Value("role")
	if _, err := c.identity.UpdateUser(r.Context(), signedIn(r), r.PathValue("id"), identity.UserPatch{Role: &role}); err != nil {
		return err
	}
	return c.redirect(w, r, "/users/"+r.PathValue("id"), "role-changed")
}

// setStatus suspends or reactivates the account in the path.
func (c *Console) setStatus(status, notice string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := c.identity.UpdateUser(r.Context(), signedIn(r), r.PathValue("id"), identity.UserPatch{Status: &status}); err != nil {
			return err
		}
		return c.redirect(w, r, "/users/"+r.PathValue("id"), notice)
	}
}

func (c *Console) suspendPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.user(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "user-suspend", &view{Title: "Suspend " + or(d.Account.Name, d.Account.Email),
		Back: "/users/" + d.Account.ID, Data: d})
}

func (c *Console) unlock(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	if _, err := c.identity.Account(r.Context(), p.TenantID, r.PathValue("id")); err != nil {
		return err
	}
	if err := c.identity.Unlock(r.Context(), p.TenantID, r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/users/"+r.PathValue("id"), "unlocked")
}

// Resetting a person's second factors, for one who lost them all.

func (c *Console) resetFactorsPage(w http.ResponseWriter, r *http.Request) error {
	d, err := c.user(r)
	if err != nil {
		return err
	}
	return c.render(w, r, http.StatusOK, "user-reset-factors", &view{Title: "Reset the second factors of " + or(d.Account.Name, d.Account.Email),
		Back: "/users/" + d.Account.ID, Data: d})
}

func (c *Console) resetFactors(w http.ResponseWriter, r *http.Request) error {
	if err := c.identity.ResetFactors(r.Context(), signedIn(r), r.PathValue("id")); err != nil {
		return err
	}
	return c.redirect(w, r, "/users/"+r.PathValue("id"), "factors-reset")
}

// Inviting: an address and a role; the invitation is mailed.

// inviteData is what the invitation form offers.
type inviteData struct{ Roles []string }

func (c *Console) invitePage(w http.ResponseWriter, r *http.Request) error {
	return c.showInvite(w, r, http.StatusOK, &form{Values: url.Values{"role": {identity.RoleMember}}})
}

func (c *Console) showInvite(w http.ResponseWriter, r *http.Request, code int, f *form) error {
	var roles []string
	for _, role := range []string{identity.RoleMember, identity.RoleAdmin, identity.RoleOwner} {
		if identity.Rank(role) <= identity.Rank(signedIn(r).Role) {
			roles = append(roles, role)
		}
	}
	return c.render(w, r, code, "user-invite", &view{Title: "Invite someone", Back: "/users", Form: f, Data: inviteData{roles}})
}

func (c *Console) invite(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	if f.required("email", "their email address"); len(f.Problems) == 0 {
		err := c.identity.Invite(r.Context(), signedIn(r), identity.Invitation{Email: f.Value("email"), Role: f.Value("role")})
		if err == nil {
			return c.redirect(w, r, "/users", "invited")
		}
		if !f.refused(err, "email", map[string]string{"email": "email address", "role": "role"}) {
			return err
		}
	}
	return c.showInvite(w, r, http.StatusUnprocessableEntity, f)
}

// roleName is a role as a sentence names it.
func roleName(role string) string {
	switch role {
	case identity.RoleOwner:
		return "Owner"
	case identity.RoleAdmin:
		return "Administrator"
	case identity.RoleMember:
		return "Member"
	}
	return fmt.Sprint(role)
}

// exportUsers answers every account as CSV, as the API's export does
// (it asks for a recent sign-in, and is audited).
func (c *Console) exportUsers(w http.ResponseWriter, r *http.Request) error {
	var buf bytes.Buffer // small, and an error must not follow a 200
	if err := c.identity.ExportUsers(r.Context(), signedIn(r), "csv", &buf); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "users-" + c.now().UTC().Format("20060102T150405Z") + ".csv"}))
	_, err := w.Write(buf.Bytes())
	return err
}

// uploaded answers the file a form sent as "file" (at most max+1 bytes
// read, so that a larger one can be told), with its header; or, the check
// page having sent the file back, the form's field named back.
func uploaded(r *http.Request, max int64, back string) ([]byte, *multipart.FileHeader, error) {
	if err := r.ParseMultipartForm(1 << 20); err == nil && r.MultipartForm != nil && len(r.MultipartForm.File["file"]) > 0 {
		fh := r.MultipartForm.File["file"][0]
		file, err := fh.Open()
		if err != nil {
			return nil, nil, err
		}
		defer file.Close()
		body, err := io.ReadAll(io.LimitReader(file, max+1))
		return body, fh, err
	}
	if err := r.ParseForm(); err != nil {
		return nil, nil, nil // nothing sent: the caller asks for a file
	}
	return []byte(r.PostForm.Get(back)), nil, nil
}

// Importing people from a CSV file (email, name, role): checked first,
// with every bad row shown by line and field; then invited.

// importData is what the import pages show.
type importData struct {
	Rows     []errs.RowProblem // what is wrong, by line
	Checked  int               // rows of a file found good
	CSV      string            // the good file, sent back with the import
	Imported int
}

// maxImportFile bounds the CSV file the import page takes.
const maxImportFile = 8 << 20

func (c *Console) importPage(w http.ResponseWriter, r *http.Request) error {
	return c.render(w, r, http.StatusOK, "users-import", &view{Title: "Import users", Back: "/users", Form: &form{Values: url.Values{}}, Data: importData{}})
}

func (c *Console) importUsers(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxImportFile+64<<10)
	f := &form{Values: url.Values{}}
	body, _, err := uploaded(r, maxImportFile, "csv")
	if err != nil {
		return err
	}
	v := &view{Title: "Import users", Back: "/users", Form: f, Secret: true}
	switch {
	case len(body) == 0:
		f.add("file", "Choose a CSV file.")
	case len(body) > maxImportFile:
		f.add("file", fmt.Sprintf("The file must be smaller than %d MiB.", maxImportFile>>20))
	}
	if len(f.Problems) > 0 {
		v.Data = importData{}
		return c.render(w, r, http.StatusUnprocessableEntity, "users-import", v)
	}
	dryRun := r.FormValue("import") != "yes"
	res, err := c.identity.ImportUsers(r.Context(), signedIn(r), bytes.NewReader(body), dryRun)
	if e, ok := errs.As(err); ok && len(e.Rows) > 0 {
		if n := len(e.Rows); n == 1 {
			f.add("file", "1 row of the file needs correcting, below. Nothing was imported.")
		} else {
			f.add("file", fmt.Sprintf("%d rows of the file need correcting, below. Nothing was imported.", n))
		}
		v.Data = importData{Rows: e.Rows}
		return c.render(w, r, http.StatusUnprocessableEntity, "users-import", v)
	}
	if err != nil {
		if f.refused(err, "file", map[string]string{}) {
			v.Data = importData{}
			return c.render(w, r, http.StatusUnprocessableEntity, "users-import", v)
		}
		return err
	}
	if dryRun {
		v.Title, v.Data = "Check the import", importData{Checked: res.Rows, CSV: string(body)}
		return c.render(w, r, http.StatusOK, "users-import", v)
	}
	return c.redirect(w, r, "/users?status=invited", "imported")
}
