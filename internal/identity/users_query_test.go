package identity_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

func field(err error) string {
	if e, ok := errs.As(err); ok {
		return e.Field
	}
	return ""
}

// TestUsersPage: the accounts list pages on the server, oldest first, with
// the total that match; filters by role, status and exact email (through
// the blind index); bad filters are named; one audit event per page, with
// the ids shown.
func TestUsersPage(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		for i := range 7 {
			role := identity.RoleMember
			if i%3 == 0 {
				role = identity.RoleAdmin
			}
			env.AddUser(t, fmt.Sprintf("u%d@acme.example", i), role, pw)
		}
		enrol(t, env, principalOf(t, env, "u3@acme.example"))
		page, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Limit: 3, Offset: 3})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 8 || len(page.Items) != 3 || page.Items[0].Email != "u2@acme.example" {
			t.Fatalf("page 2 of 3: total %d, %d items, first %q", page.Total, len(page.Items), page.Items[0].Email)
		}
		if page.Items[0].SecondFactor || !page.Items[1].SecondFactor {
			t.Errorf("second factors: u2 %v, u3 %v; want no, yes", page.Items[0].SecondFactor, page.Items[1].SecondFactor)
		}
		admins, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Role: identity.RoleAdmin})
		if err != nil || admins.Total != 3 {
			t.Fatalf("admins: %d, %v", admins.Total, err)
		}
		one, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Email: "U5@Acme.Example"})
		if err != nil || one.Total != 1 || one.Items[0].Email != "u5@acme.example" {
			t.Fatalf("by email: %+v, %v", one, err)
		}
		none, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Email: "nobody@acme.example"})
		if err != nil || none.Total != 0 || len(none.Items) != 0 {
			t.Fatalf("unknown email: %+v, %v", none, err)
		}
		for _, bad := range []struct {
			q     identity.UserQuery
			field string
		}{{identity.UserQuery{Role: "king"}, "role"}, {identity.UserQuery{Status: "gone"}, "status"},
			{identity.UserQuery{Email: "not an address"}, "email"}, {identity.UserQuery{Limit: 501}, "limit"}} {
			if _, err := ids.Users(ctx, env.Tenant.ID, bad.q); !errs.Is(err, errs.Invalid) || field(err) != bad.field {
				t.Errorf("%+v: %v; want a refusal naming %s", bad.q, err, bad.field)
			}
		}
		evs, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "user.list"})
		if err != nil {
			t.Fatal(err)
		}
		shown := fmt.Sprint([]any{page.Items[0].ID, page.Items[1].ID, page.Items[2].ID})
		named := false
		for _, e := range evs {
			named = named || fmt.Sprint(e.Details["ids"]) == shown
		}
		if len(evs) != 4 || !named {
			t.Fatalf("%d user.list events; want one per page (4), one naming the ids of page 2", len(evs))
		}
	})
}

// TestOwnTimeZone: a person's own time zone, kept with their encrypted
// attributes; a name that is no zone is refused by its field; empty goes
// back to the organisation's.
func TestOwnTimeZone(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		u := env.AddUser(t, "tz@acme.example", identity.RoleMember, pw)
		p := principalOf(t, env, "tz@acme.example")
		if err := ids.SetTimeZone(ctx, p, "Mars/Olympus"); !errs.Is(err, errs.Invalid) || field(err) != "time_zone" {
			t.Errorf("a zone that is none: %v", err)
		}
		if err := ids.SetTimeZone(ctx, p, " Asia/Tokyo "); err != nil {
			t.Fatal(err)
		}
		if pr, err := env.Core.Subjects.Profile(ctx, env.Tenant.ID, u.SubjectID); err != nil || pr.TimeZone != "Asia/Tokyo" {
			t.Errorf("profile: %+v %v", pr, err)
		}
		if err := ids.SetTimeZone(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
		if pr, _ := env.Core.Subjects.Profile(ctx, env.Tenant.ID, u.SubjectID); pr.TimeZone != "" {
			t.Errorf("cleared: %q", pr.TimeZone)
		}
	})
}

// TestFindByName: the users list finds people by whole words of their
// name, in any case and order, through blind indexes kept in step with the
// name; no name is stored in clear for it; an erased account's words go.
func TestFindByName(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		op := principalOf(t, env, "owner@acme.example")
		for _, u := range []identity.NewUser{{Email: "kim@acme.example", Name: "Kim Lee"}, {Email: "lee@acme.example", Name: "Lee-Ann Park"},
			{Email: "jo@acme.example", Name: "Jo Kim"}} {
			if _, err := ids.CreateUser(ctx, env.Tenant.ID, u); err != nil {
				t.Fatal(err)
			}
		}
		find := func(name string) []string {
			t.Helper()
			page, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, a := range page.Items {
				out = append(out, a.Email)
			}
			return out
		}
		if got := fmt.Sprint(find("kim")); got != "[kim@acme.example jo@acme.example]" {
			t.Errorf("kim: %s", got)
		}
		if got := fmt.Sprint(find("LEE kim")); got != "[kim@acme.example]" {
			t.Errorf("lee kim: %s", got)
		}
		if got := fmt.Sprint(find("ki")); got != "[]" {
			t.Errorf("a part of a word: %s", got)
		}
		// A change of name moves the words.
		jo, err := ids.UserByEmail(ctx, env.Tenant.ID, "jo@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		name := "Jo Smith"
		if _, err := ids.UpdateUser(ctx, op, jo.ID, identity.UserPatch{Name: &name}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(find("kim")); got != "[kim@acme.example]" {
			t.Errorf("kim after jo's change: %s", got)
		}
		if got := fmt.Sprint(find("smith")); got != "[jo@acme.example]" {
			t.Errorf("smith: %s", got)
		}
		for _, f := range coretest.Files(t, env.DataDir) {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(bytes.ToLower(b), []byte("smith")) {
				t.Errorf("%s holds a name in clear", f)
			}
		}
		if _, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{Name: " - "}); field(err) != "name" {
			t.Errorf("a name of no word: %v", err)
		}
	})
}
