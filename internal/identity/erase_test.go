package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// TestEraseUserRules: an account is erased — the person with it — only by
// a person (never a token), never by someone it outranks, never by its
// holder (who closes it instead); what an owner may erase goes whole.
func TestEraseUserRules(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ada@acme.example", "admin", pw)
		admin := principalOf(t, env, "ada@acme.example")
		owner := principalOf(t, env, "owner@acme.example")
		token, err := ids.Authenticate(ctx, env.Token)
		if err != nil {
			t.Fatal(err)
		}
		member := env.AddUser(t, "mo@acme.example", "member", pw)
		other := env.AddUser(t, "al@acme.example", "admin", pw)
		for _, c := range []struct {
			name string
			err  error
			want errs.Kind
		}{
			{"an admin erasing the owner", erase(ids.EraseUser(ctx, admin, owner.UserID, subject.EraseInput{Reason: "api"})), errs.Forbidden},
			{"the owner's token erasing a member", erase(ids.EraseUser(ctx, token, member.ID, subject.EraseInput{Reason: "api"})), errs.Forbidden},
			{"an admin erasing themselves", erase(ids.EraseUser(ctx, admin, admin.UserID, subject.EraseInput{Reason: "api"})), errs.Conflict},
			{"an account of another tenant", erase(ids.EraseUser(ctx, admin, "01a00000-0000-7000-8000-000000000000", subject.EraseInput{})), errs.NotFound},
		} {
			if !errs.Is(c.err, c.want) {
				t.Errorf("%s: %v; want %v", c.name, c.err, c.want)
			}
		}
		for _, id := range []string{owner.UserID, member.ID, admin.UserID} {
			if _, err := ids.UserByID(ctx, env.Tenant.ID, id); err != nil {
				t.Errorf("account %s after refused erasures: %v", id, err)
			}
		}
		// An admin erases a member; the owner erases an admin.
		for _, c := range []struct {
			by   identity.Principal
			user identity.User
		}{{admin, member}, {owner, other}} {
			cert, err := ids.EraseUser(ctx, c.by, c.user.ID, subject.EraseInput{Reason: "api"})
			if err != nil || cert.Erased["users"] != 1 || cert.Erased["subjects"] != 1 {
				t.Fatalf("%s erasing a %s: %+v %v", c.by.Role, c.user.Role, cert, err)
			}
			if _, err := ids.UserByID(ctx, env.Tenant.ID, c.user.ID); !errs.Is(err, errs.NotFound) {
				t.Errorf("the erased account: %v", err)
			}
			if _, err := env.Core.Subjects.Get(ctx, env.Tenant.ID, c.user.SubjectID); !errs.Is(err, errs.Gone) {
				t.Errorf("the erased person: %v", err)
			}
		}
	})
}

func erase(_ subject.Certificate, err error) error { return err }

// TestExportScopeMigration: the access export has its own scope; tokens
// made before it that held subjects:read get it (migration 0021), others
// do not, and running it again changes nothing.
func TestExportScopeMigration(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		owner, err := ids.UserByEmail(ctx, env.Tenant.ID, "owner@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		made := map[string][]string{"reader": {"audit:read", "subjects:read"}, "auditor": {"audit:read"}, "writer": {"subjects:write"}}
		for name, scopes := range made {
			if _, _, err := ids.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", name, scopes, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "DELETE FROM schema_migrations WHERE version = 21")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if n, err := env.Core.DB.Migrate(ctx); err != nil || n != 1 {
				t.Fatalf("migration 0021 again: %d %v", n, err)
			}
		}
		toks, err := ids.Tokens(ctx, env.Tenant.ID, owner.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"reader": "audit:read subjects:export subjects:read", "auditor": "audit:read", "writer": "subjects:write"}
		for _, tok := range toks {
			if w, ok := want[tok.Name]; ok && strings.Join(tok.Scopes, " ") != w {
				t.Errorf("token %s after the migration: %v; want %s", tok.Name, tok.Scopes, w)
			}
		}
	})
}

// TestAccountWrites: the report of writes to people with accounts outside
// the account's paths lists what the subjects API left before the fix
// (simulated here by recording the events it wrote) — and neither the
// account paths' own writes, nor writes to a contact, nor writes to a
// person before they had an account.
func TestAccountWrites(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids, subjects := env.Core.Identity, env.Core.Subjects
		rename := subject.Patch{Attributes: subject.Optional[map[string]any]{Set: true, Value: map[string]any{"name": "x"}}}
		ann, err := subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := subjects.Rectify(ctx, env.Tenant.ID, ann.ID, rename); err != nil {
			t.Fatal(err)
		}
		later, err := subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "later@acme.example"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := subjects.Rectify(ctx, env.Tenant.ID, later.ID, rename); err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(time.Second)
		if u := env.AddUser(t, "later@acme.example", "member", ""); u.SubjectID != later.ID {
			t.Fatalf("the account was not made for the existing person: %+v", u)
		}
		mo := env.AddUser(t, "mo@acme.example", "member", pw)
		al := env.AddUser(t, "al@acme.example", "member", pw)
		owner := principalOf(t, env, "owner@acme.example")
		name := "Mo"
		if _, err := ids.UpdateUser(ctx, owner, mo.ID, identity.UserPatch{Name: &name}); err != nil {
			t.Fatal(err)
		}
		if _, err := ids.EraseUser(ctx, owner, al.ID, subject.EraseInput{Reason: "api"}); err != nil {
			t.Fatal(err)
		}
		// What the subjects API wrote before the fix, with a token.
		tokenCtx, _ := env.AsToken(t)
		for _, e := range []audit.Event{
			{Action: "subject.rectify", TargetType: "subject", TargetID: mo.SubjectID, SubjectID: mo.SubjectID, Details: map[string]any{"fields": []string{"email"}}},
			{Action: "subject.erase", TargetType: "subject", TargetID: later.ID, SubjectID: later.ID, Details: map[string]any{"reason": "api"}},
		} {
			if err := env.Core.Log.Record(tokenCtx, env.Tenant.ID, e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ids.AccountWrites(ctx, env.Tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for _, e := range got {
			seen = append(seen, e.Action+" "+e.SubjectID+" "+e.Actor.Type)
		}
		want := []string{"subject.erase " + later.ID + " token", "subject.rectify " + mo.SubjectID + " token"}
		if strings.Join(seen, "|") != strings.Join(want, "|") {
			t.Errorf("account writes: %v; want %v", seen, want)
		}
	})
}
