package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func TestTokens(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		secret, tok, err := ids.CreateToken(ctx, env.Tenant.ID, "OWNER@acme.example", "crm", []string{"subjects:read,audit:read"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, "cust_") || len(secret) != 56 || strings.Join(tok.Scopes, " ") != "audit:read subjects:read" {
			t.Fatalf("token %q %+v", secret, tok)
		}
		p, err := ids.Authenticate(ctx, secret)
		if err != nil || p.TenantID != env.Tenant.ID || p.TokenID != tok.ID || !p.Can("audit:read") || p.Can("subjects:write") {
			t.Fatalf("Authenticate = %+v, %v", p, err)
		}
		// The secret is not stored: only its hash.
		var n int
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT count(*) FROM api_tokens WHERE hash = ?", []byte(secret)).Scan(&n); err != nil || n != 0 {
			t.Fatalf("secret stored as is: %d %v", n, err)
		}
		for _, bad := range []string{"", "cust_", secret[:len(secret)-1], strings.Replace(secret, "cust_", "xxxx_", 1),
			secret[:10] + strings.Repeat("A", 38) + secret[48:]} {
			if _, err := ids.Authenticate(ctx, bad); !errs.Is(err, errs.Unauthenticated) {
				t.Errorf("Authenticate(%q) = %v", bad, err)
			}
		}
		for _, c := range []struct {
			name   string
			scopes []string
			ttl    time.Duration
			field  string
		}{
			{"", nil, time.Hour, "name"},
			{"x", []string{"admin"}, time.Hour, "scopes"},
			{"x", nil, 0, "expires"},
			{"x", nil, 400 * 24 * time.Hour, "expires"},
		} {
			if _, _, err := ids.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", c.name, c.scopes, c.ttl); err == nil ||
				!strings.Contains(err.Error(), c.field) {
				t.Errorf("CreateToken(%+v) = %v; want an error about %s", c, err, c.field)
			}
		}
	})
}

func TestUsersAreSubjects(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		contact, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "lee@acme.example", Phone: "+442079460111"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := env.Core.Identity.CreateUser(ctx, env.Tenant.ID, identity.NewUser{Email: "LEE@acme.example", Role: identity.RoleAdmin})
		if err != nil {
			t.Fatal(err)
		}
		if u.SubjectID != contact.ID {
			t.Errorf("user subject %s; want the existing contact %s", u.SubjectID, contact.ID)
		}
		if _, err := env.Core.Identity.CreateUser(ctx, env.Tenant.ID, identity.NewUser{Email: "lee@acme.example", Role: identity.RoleMember}); !errs.Is(err, errs.Invalid) {
			t.Errorf("second user with one email: %v", err)
		}
		if _, err := env.Core.Identity.CreateUser(ctx, env.Tenant.ID, identity.NewUser{Email: "new@acme.example", Role: "god"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("unknown role: %v", err)
		}
		other, _ := env.AddTenant(t, "globex", "owner@globex.example")
		if _, err := env.Core.Identity.UserByEmail(ctx, other.ID, "lee@acme.example"); !errs.Is(err, errs.NotFound) {
			t.Errorf("user found through another tenant: %v", err)
		}
	})
}

// A node keeps the tokens it authenticated while nothing they depend on
// changes; a change made anywhere — here by hand in the database, as
// another node or the CLI would — counts from the next request on.
func TestCachedTokensFollowEveryChange(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids, db := env.Core.Identity, env.Core.DB
		exec := func(q string, args ...any) { t.Helper(); sqldbtest.Exec(t, db, q, args...) }
		for _, c := range []struct {
			name, change string
			still        string // a scope the token keeps after the change ("" when it stops working)
		}{
			{"revoked", "UPDATE api_tokens SET revoked_at = 1 WHERE id = ?", ""},
			{"expired", "UPDATE api_tokens SET expires_at = 1 WHERE id = ?", ""},
			{"owner suspended", "UPDATE users SET status = 'suspended' WHERE id = (SELECT user_id FROM api_tokens WHERE id = ?)", ""},
			{"owner lowered", "UPDATE users SET role = 'member' WHERE id = (SELECT user_id FROM api_tokens WHERE id = ?)", "spaces:read"},
			{"tenant suspended", "UPDATE tenants SET status = 'suspended' WHERE id = (SELECT tenant_id FROM api_tokens WHERE id = ?)", ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				exec("UPDATE users SET role = 'owner', status = 'active'")
				exec("UPDATE tenants SET status = 'active'")
				secret, tok, err := ids.CreateToken(ctx, env.Tenant.ID, "owner@acme.example", c.name, []string{"spaces:read", "users:write"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				for range 2 { // the second is answered from the cache
					if p, err := ids.Authenticate(db.WithEpochs(ctx), secret); err != nil || !p.Can("users:write") {
						t.Fatalf("before: %+v, %v", p, err)
					}
				}
				exec(c.change, tok.ID)
				p, err := ids.Authenticate(db.WithEpochs(ctx), secret)
				switch {
				case c.still == "" && !errs.Is(err, errs.Unauthenticated):
					t.Errorf("after: %+v, %v; want the token refused", p, err)
				case c.still != "" && (err != nil || !p.Can(c.still) || p.Can("users:write")):
					t.Errorf("after: %+v, %v; want %s only", p, err, c.still)
				}
			})
		}
	})
}

// A request learns that a contact has no account from the tenant's cached
// account holders; an account made since (here or on another node) is
// seen from the next request on.
func TestAccountHoldersFollowNewAccounts(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids, db := env.Core.Identity, env.Core.DB
		contact, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "kim@acme.example"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second from the cache
			if _, err := ids.UserBySubject(db.WithEpochs(ctx), env.Tenant.ID, contact.ID); !errs.Is(err, errs.NotFound) {
				t.Fatalf("a contact: %v; want NotFound", err)
			}
		}
		u, err := ids.CreateUser(ctx, env.Tenant.ID, identity.NewUser{Email: "kim@acme.example", Role: identity.RoleMember})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ids.UserBySubject(db.WithEpochs(ctx), env.Tenant.ID, contact.ID)
		if err != nil || got.ID != u.ID {
			t.Fatalf("after the account was made: %+v, %v; want %s", got, err, u.ID)
		}
	})
}
