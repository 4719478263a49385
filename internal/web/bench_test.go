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
	"github.com/custodia/custodia/internal/identity"
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
	res, err := ids.Login(ctx, identity.LoginInput{Tenant: "acme", Email: "owner@acme.example", Password: apptest.Password})
	if err != nil {
		b.Fatal(err)
	}
	h := env.App.Handler()
	page := func(path string) func(b *testing.B) {
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
	b.Run(fmt.Sprintf("users-of-%d", users), page("/users?page=3"))
	b.Run(fmt.Sprintf("users-of-%d-by-role", users), page("/users?role=member&page=2"))
	b.Run(fmt.Sprintf("users-of-%d-by-email", users), page("/users?q="+fmt.Sprintf("user%05d@acme.example", users/2)))
	b.Run(fmt.Sprintf("audit-of-%d", events), page("/audit"))
	b.Run(fmt.Sprintf("audit-of-%d-by-person", events), page("/audit?person="+fmt.Sprintf("user%05d@acme.example", users/2)))
	b.Run(fmt.Sprintf("audit-of-%d-by-rare-action", events), page("/audit?action=token.*"))     // one event, the oldest
	b.Run(fmt.Sprintf("audit-of-%d-by-common-action", events), page("/audit?action=subject.*")) // nearly every event
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
