package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

// TestResetFactors: an admin removes every second factor of a member who
// lost them: the member's sessions end, the next sign-in asks for no code
// (or for enrolment when the tenant requires one), the member is mailed.
// Never on an owner by an admin, never on oneself, never by a token.
func TestResetFactors(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ad@acme.example", identity.RoleAdmin, pw)
		member := env.AddUser(t, "mo@acme.example", identity.RoleMember, pw)
		admin := principalOf(t, env, "ad@acme.example")
		enrol(t, env, principalOf(t, env, "mo@acme.example"))
		res, err := login(env, "mo@acme.example", pw, "")
		if err != nil || !res.MFARequired {
			t.Fatalf("before: %+v %v", res, err)
		}
		owner, err := ids.UserByEmail(ctx, env.Tenant.ID, "owner@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		if err := ids.ResetFactors(ctx, admin, owner.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("an admin on the owner: %v", err)
		}
		if err := ids.ResetFactors(ctx, admin, admin.UserID); !errs.Is(err, errs.Conflict) {
			t.Errorf("on oneself: %v", err)
		}
		tok := admin
		tok.TokenID = "some token"
		if err := ids.ResetFactors(ctx, tok, member.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("by a token: %v", err)
		}
		if err := ids.ResetFactors(ctx, admin, member.ID); err != nil {
			t.Fatal(err)
		}
		if ms, err := ids.Methods(ctx, env.Tenant.ID, member.ID); err != nil || len(ms) != 0 {
			t.Errorf("methods after the reset: %v %v", ms, err)
		}
		if _, err := ids.AuthenticateSession(ctx, res.Session); err == nil {
			t.Error("the member's session survived the reset")
		}
		env.Mail.Wait(t, "mo@acme.example", "second factors", 10*time.Second)
		everyone := identity.MFAEveryone
		if _, err := ids.UpdateSecurity(ctx, env.Tenant.ID, identity.SecurityPatch{MFARequired: &everyone}); err != nil {
			t.Fatal(err)
		}
		if res, err := login(env, "mo@acme.example", pw, ""); err != nil || res.MFARequired || !res.EnrolmentRequired {
			t.Errorf("sign-in after the reset, 2FA required: %+v %v; want enrolment", res, err)
		}
	})
}

// TestTenantTokens: the tenant's live tokens with their owners; an admin
// revokes a member's token but never an owner's.
func TestTenantTokens(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ad@acme.example", identity.RoleAdmin, pw)
		member := env.AddUser(t, "mo@acme.example", identity.RoleMember, pw)
		admin := principalOf(t, env, "ad@acme.example")
		secret, _, err := ids.CreateTokenFor(ctx, env.Tenant.ID, member, "sync", []string{"spaces:read"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := ids.TenantTokens(ctx, env.Tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		owners := map[string]string{}
		for _, tk := range ts {
			owners[tk.Name] = tk.Owner
		}
		if len(ts) != 2 || owners["sync"] != "mo@acme.example" || owners["test"] != "owner@acme.example" {
			t.Fatalf("tenant tokens: %+v", ts)
		}
		if _, err := ids.Authenticate(ctx, secret); err != nil {
			t.Fatalf("the member's token before: %v", err)
		}
		for _, tk := range ts {
			err := ids.RevokeTokenOf(ctx, admin, tk.ID)
			switch tk.Name {
			case "test": // the owner's
				if !errs.Is(err, errs.Forbidden) {
					t.Errorf("an admin revoking the owner's token: %v", err)
				}
			default:
				if err != nil {
					t.Errorf("an admin revoking a member's token: %v", err)
				}
			}
		}
		if _, err := ids.Authenticate(ctx, secret); err == nil {
			t.Error("the revoked token still authenticates")
		}
		if ts, _ := ids.TenantTokens(ctx, env.Tenant.ID); len(ts) != 1 {
			t.Errorf("%d live tokens after the revocation; want 1", len(ts))
		}
	})
}
