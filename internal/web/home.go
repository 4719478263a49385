package web

import (
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/rights"
)

// home is the first page after signing in: what needs attention, as far
// as the person may see it — requests overdue or due within 7 days,
// people locked out, owners and administrators without the second factor
// the organisation requires, background jobs failing — each a link to
// the list that shows them; then what their role may do.
func (c *Console) home(w http.ResponseWriter, r *http.Request) error {
	p := signedIn(r)
	ctx := r.Context()
	t, err := c.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return err
	}
	d := homeData{Role: p.Role, Users: p.Can("users:read"), Audit: p.Can("audit:read"), Settings: p.Can("settings:read"),
		Subjects: p.Can("subjects:read"), Purposes: p.Can("purposes:read")}
	add := func(n int, one, many, href string, urgent bool) {
		if n > 0 {
			what := many
			if n == 1 {
				what = one
			}
			d.Attention = append(d.Attention, attention{Text: strconv.Itoa(n) + " " + what, Href: href, Urgent: urgent})
		}
	}
	if d.Subjects {
		for _, due := range []struct {
			due, one, many string
			urgent         bool
		}{{"overdue", "request is overdue", "requests are overdue", true}, {"soon", "request is due within 7 days", "requests are due within 7 days", false}} {
			page, err := c.rights.Query(ctx, p.TenantID, rights.Filter{Due: due.due, Limit: 1, NoStaff: !p.Can("users:read")})
			if err != nil {
				return err
			}
			add(page.Total, due.one, due.many, "/requests?due="+due.due+"&unverified=show", due.urgent)
		}
	}
	if d.Users {
		a, err := c.identity.NeedsAttention(ctx, p.TenantID)
		if err != nil {
			return err
		}
		add(a.Locked, "person is locked out after wrong passwords", "people are locked out after wrong passwords", "/users?locked=yes", false)
		if a.FactorsRequired {
			add(a.AdminsNoFactor, "owner or administrator has no second factor, which the organisation requires",
				"owners and administrators have no second factor, which the organisation requires", "/users?second_factor=no&status=active", true)
		}
	}
	if d.Settings && c.backups != nil {
		if at, made, err := c.backups.Newest(); err != nil {
			return err
		} else if made && c.now().Sub(at) > api.StaleBackup {
			d.Attention = append(d.Attention, attention{Text: "The newest backup is " + strconv.Itoa(int(c.now().Sub(at).Hours())) +
				" hours old: backups are made every day; ask whoever runs Custodia to look at the server's log", Href: "/residency", Urgent: true})
		}
	}
	if d.Settings && c.failing != nil {
		names, err := c.failing(ctx)
		if err != nil {
			return err
		}
		d.Failing = names
	}
	return c.render(w, r, http.StatusOK, "home", &view{Title: t.Name, Data: d})
}

// homeData is what the home page shows.
type homeData struct {
	Role                                       string
	Attention                                  []attention
	Failing                                    []string // background jobs whose last run failed
	Users, Audit, Settings, Subjects, Purposes bool
}

// attention is one thing that needs someone, with the list that shows it.
type attention struct {
	Text, Href string
	Urgent     bool
}
