package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/subject"
)

// BenchmarkPages measures the server's time for the console's two biggest
// lists on SQLite as in production: the users page (50 rows of 10 000
// accounts, with a filter) and the audit trail (50 of 1 000 000 events,
// unfiltered and by one person). BENCH_USERS and BENCH_EVENTS shrink the
// data for a quick run.
func BenchmarkPages(b *testing.B) {
	users, events := envInt("BENCH_USERS", 10000), envInt("BENCH_EVENTS", 1000000)
	env := apptest.NewWith(b, "", apptest.AsInProduction)
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	ids := env.App.Identity
	for i := range users {
		if _, err := ids.CreateUser(ctx, env.Tenant.ID, identity.NewUser{Email: fmt.Sprintf("user%05d@acme.example", i), Role: identity.RoleMember}); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]audit.Event, 1000)
	for i := range batch {
		batch[i] = audit.Event{Action: "subject.read", TargetType: "subject", TargetID: strconv.Itoa(i), SubjectID: "s"}
	}
	for n := 0; n < events; n += len(batch) {
		actor := audit.WithActor(ctx, audit.Actor{Type: audit.ActorUser, ID: "u" + strconv.Itoa(n%997), SubjectID: "p" + strconv.Itoa(n%997)})
		if err := env.App.Log.Record(actor, env.Tenant.ID, batch...); err != nil {
			b.Fatal(err)
		}
	}
	page := pager(b, env)
	b.Run(fmt.Sprintf("users-of-%d", users), page("/users?page=3"))
	b.Run(fmt.Sprintf("users-of-%d-by-role", users), page("/users?role=member&page=2"))
	b.Run(fmt.Sprintf("users-of-%d-by-email", users), page("/users?q="+fmt.Sprintf("user%05d@acme.example", users/2)))
	b.Run(fmt.Sprintf("audit-of-%d", events), page("/audit"))
	b.Run(fmt.Sprintf("audit-of-%d-by-person", events), page("/audit?person="+fmt.Sprintf("user%05d@acme.example", users/2)))
	b.Run(fmt.Sprintf("audit-of-%d-by-rare-action", events), page("/audit?action=token.*"))     // one event, the oldest
	b.Run(fmt.Sprintf("audit-of-%d-by-common-action", events), page("/audit?action=subject.*")) // nearly every event
}

// pager signs the owner in and answers a benchmark of one page's
// rendering by the whole handler.
func pager(b *testing.B, env *apptest.Env) func(path string) func(b *testing.B) {
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	res, err := env.App.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: "owner@acme.example", Password: apptest.Password})
	if err != nil {
		b.Fatal(err)
	}
	h := env.App.Handler()
	return func(path string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(&http.Cookie{Name: "__Host-custodia_session", Value: res.Session})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
		}
	}
}

// BenchmarkContactPages measures the contacts list (first, newest, deep,
// with a purpose's consent column, without a valid consent, by exact
// address), a contact's page and the consent page, on SQLite as in
// production with 100 000 contacts, 10 000 of them with a consent, and
// 1 000 000 audit events. BENCH_CONTACTS, BENCH_GRANTS and BENCH_EVENTS
// shrink the data for a quick run.
func BenchmarkContactPages(b *testing.B) {
	contacts, grants, events := envInt("BENCH_CONTACTS", 100000), envInt("BENCH_GRANTS", 10000), envInt("BENCH_EVENTS", 1000000)
	env := apptest.NewWith(b, "", apptest.AsInProduction)
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{NoticeText: "We send our news once a month.",
		Purpose: register.Purpose{Key: "news", Name: "Monthly news", LegalBasis: register.Consent, DataCategories: []string{"user.contact.email"}}}); err != nil {
		b.Fatal(err)
	}
	rows := make([]subject.ImportRow, contacts)
	for i := range rows {
		rows[i] = subject.ImportRow{Line: i + 2, New: subject.New{Email: fmt.Sprintf("person%06d@example.org", i), Source: "bench",
			Attributes: map[string]any{"city": "Ghent"}}}
	}
	if _, err := env.App.Subjects.Import(ctx, env.Tenant.ID, rows, nil, subject.ExistingFail, false, nil); err != nil {
		b.Fatal(err)
	}
	ids, err := env.App.Subjects.IDs(ctx, env.Tenant.ID, subject.Where{}, "", contacts)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids[:grants] {
		if _, err := env.App.Consent.Record(ctx, env.Tenant.ID, id, consent.Input{Purpose: "news", Action: consent.Grant, Method: "web_form"}); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]audit.Event, 1000)
	for i := range batch {
		batch[i] = audit.Event{Action: "subject.read", TargetType: "subject", TargetID: ids[i%len(ids)], SubjectID: ids[i%len(ids)]}
	}
	h, err := env.App.Log.Verify(ctx, env.Tenant.ID)
	if err != nil {
		b.Fatal(err)
	}
	for n := h.Events; n < int64(events); n += int64(len(batch)) {
		if err := env.App.Log.Record(ctx, env.Tenant.ID, batch...); err != nil {
			b.Fatal(err)
		}
	}
	page := pager(b, env)
	one := ids[len(ids)/2]
	b.Run(fmt.Sprintf("contacts-of-%d", contacts), page("/contacts"))
	b.Run(fmt.Sprintf("contacts-of-%d-newest", contacts), page("/contacts?sort=newest"))
	b.Run(fmt.Sprintf("contacts-of-%d-deep", contacts), page("/contacts?after="+one+"&from=50001"))
	b.Run(fmt.Sprintf("contacts-of-%d-consent-column", contacts), page("/contacts?purpose=news"))
	b.Run(fmt.Sprintf("contacts-of-%d-without-consent", contacts), page("/contacts?purpose=news&consent=missing"))
	b.Run(fmt.Sprintf("contacts-of-%d-by-email", contacts), page("/contacts?q="+fmt.Sprintf("person%06d@example.org", contacts/2)))
	b.Run("contact-with-consent", page("/contacts/"+ids[0]))
	b.Run("contact", page("/contacts/"+one))
	b.Run(fmt.Sprintf("consent-report-of-%d", contacts), page("/consent"))
}

// BenchmarkInbox measures the requests inbox on SQLite as in production
// with 10 000 requests: the first page of the open ones, a filtered one,
// and a page further on. BENCH_REQUESTS shrinks the data.
func BenchmarkInbox(b *testing.B) {
	n := envInt("BENCH_REQUESTS", 10000)
	env := apptest.NewWith(b, "", apptest.AsInProduction)
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	types := []string{"access", "erasure", "rectification", "portability"}
	for i := range n {
		r, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: types[i%len(types)], Channel: "email",
			Email: fmt.Sprintf("person%05d@example.org", i)})
		if err != nil {
			b.Fatal(err)
		}
		if i%3 != 0 {
			if _, err := env.App.Rights.Update(ctx, env.Tenant.ID, r.ID, rights.Change{Status: rights.Verified}); err != nil {
				b.Fatal(err)
			}
		}
	}
	page := pager(b, env)
	further := rights.Filter{Status: "open", Verified: new(true), Limit: 1000} // as the inbox lists: the cursor halfway
	for range n / 3 / 1000 {
		p, err := env.App.Rights.Query(ctx, env.Tenant.ID, further)
		if err != nil {
			b.Fatal(err)
		}
		further.Cursor = p.NextCursor
	}
	b.Run(fmt.Sprintf("inbox-of-%d", n), page("/requests"))
	b.Run(fmt.Sprintf("inbox-of-%d-erasure-unverified-too", n), page("/requests?type=erasure&unverified=show"))
	b.Run(fmt.Sprintf("inbox-of-%d-further-on", n), page("/requests?cursor="+further.Cursor))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
