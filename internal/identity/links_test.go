package identity_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

const newPassword = "a new and long passphrase"

func TestInvitation(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ada@acme.example", identity.RoleAdmin, pw)
		admin := principalOf(t, env, "ada@acme.example")

		if err := ids.Invite(ctx, admin, identity.Invitation{Email: "new@acme.example", Role: identity.RoleOwner}); !errs.Is(err, errs.Forbidden) {
			t.Errorf("admin invites an owner: %v", err)
		}
		if err := ids.Invite(ctx, admin, identity.Invitation{Email: "not an email"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("bad email: %v", err)
		}
		if err := ids.Invite(ctx, admin, identity.Invitation{Email: "new@acme.example", Role: identity.RoleAdmin}); err != nil {
			t.Fatal(err)
		}
		first := env.LinkToken(t, "new@acme.example", "invited")
		u, err := ids.UserByEmail(ctx, env.Tenant.ID, "new@acme.example")
		if err != nil || u.Status != identity.StatusInvited || u.Role != identity.RoleAdmin {
			t.Fatalf("invited user %+v %v", u, err)
		}
		// An invited user cannot sign in, and an admin cannot just activate them.
		if _, err := login(env, "new@acme.example", "", ""); err == nil {
			t.Error("invited user signed in without a password")
		}
		active := identity.StatusActive
		if _, err := ids.UpdateUser(ctx, admin, u.ID, identity.UserPatch{Status: &active}); !errs.Is(err, errs.Invalid) {
			t.Errorf("invited user activated by an admin: %v", err)
		}

		// The reminder replaces the first link.
		if err := ids.ResendInvitation(ctx, admin, u.ID); err != nil {
			t.Fatal(err)
		}
		env.Mail.WaitCount(t, "new@acme.example", "invited", 2, 10*time.Second)
		second := env.LinkToken(t, "new@acme.example", "invited")
		if second == first {
			t.Fatal("the reminder repeated the link")
		}
		if _, err := ids.Invitation(ctx, first); !errs.Is(err, errs.Gone) {
			t.Errorf("replaced link: %v", err)
		}
		info, err := ids.Invitation(ctx, second)
		if err != nil || info.Email != "new@acme.example" || info.Tenant != "acme" || info.Password.MinLength != 15 {
			t.Fatalf("invitation info %+v %v", info, err)
		}

		// A password the policy refuses uses nothing up.
		in := identity.LinkInput{Secret: second, Password: "password1", Client: identity.Client{IP: "192.0.2.9"}}
		if _, err := ids.AcceptInvitation(ctx, in); !errs.Is(err, errs.Invalid) {
			t.Fatalf("weak password: %v", err)
		}
		// Ten browsers race with the link: exactly one wins.
		in.Password = newPassword
		var wg sync.WaitGroup
		var won atomic.Int64
		for range 10 {
			wg.Go(func() {
				res, err := ids.AcceptInvitation(ctx, in)
				switch {
				case err == nil && res.Session != "" && res.Device != "":
					won.Add(1)
				case !errs.Is(err, errs.Gone):
					t.Errorf("accept: %v", err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d acceptances of one link; want 1", won.Load())
		}
		if u, _ = ids.UserByID(ctx, env.Tenant.ID, u.ID); u.Status != identity.StatusActive {
			t.Errorf("status after accepting: %s", u.Status)
		}
		if _, err := login(env, "new@acme.example", newPassword, ""); err != nil {
			t.Errorf("sign in with the chosen password: %v", err)
		}
		if err := ids.ResendInvitation(ctx, admin, u.ID); !errs.Is(err, errs.Conflict) {
			t.Errorf("resend to an active user: %v", err)
		}

		// Inviting an address that has an account answers the same, and
		// mails a note instead of a link.
		if err := ids.Invite(ctx, admin, identity.Invitation{Email: "ada@acme.example"}); err != nil {
			t.Fatalf("inviting an existing account: %v", err)
		}
		m := env.Mail.Wait(t, "ada@acme.example", "already have an account", 10*time.Second)
		if strings.Contains(m.Text, "#token=") {
			t.Errorf("existing account got a link: %q", m.Text)
		}
		if got := actions(t, env, u.SubjectID); got["user.invite"] != 1 || got["user.invite.resend"] != 1 || got["user.invitation.accept"] != 1 {
			t.Errorf("audit: %v", got)
		}
	})
}

// TestInvitationExpiresAndEnforcesTwoFactor: a week-old link is dead, and
// accepting when the tenant demands a second factor gives an
// enrolment-only session.
func TestInvitationExpiresAndEnforcesTwoFactor(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		owner := principalOf(t, env, "owner@acme.example")
		every := identity.MFAEveryone
		if _, err := ids.UpdateSecurity(ctx, env.Tenant.ID, identity.SecurityPatch{MFARequired: &every}); err != nil {
			t.Fatal(err)
		}
		if err := ids.Invite(ctx, owner, identity.Invitation{Email: "late@acme.example"}); err != nil {
			t.Fatal(err)
		}
		if err := ids.Invite(ctx, owner, identity.Invitation{Email: "soon@acme.example"}); err != nil {
			t.Fatal(err)
		}
		late := env.LinkToken(t, "late@acme.example", "invited")
		soon := env.LinkToken(t, "soon@acme.example", "invited")
		env.Now.Advance(6 * 24 * time.Hour)
		res, err := ids.AcceptInvitation(ctx, identity.LinkInput{Secret: soon, Password: newPassword})
		if err != nil || !res.EnrolmentRequired {
			t.Fatalf("accept under enforced 2FA: %+v %v", res, err)
		}
		if p, err := ids.AuthenticateSession(ctx, res.Session); err != nil || !p.Enrolment {
			t.Errorf("session after accepting: %+v %v", p, err)
		}
		env.Now.Advance(24*time.Hour + time.Second)
		if _, err := ids.AcceptInvitation(ctx, identity.LinkInput{Secret: late, Password: newPassword}); !errs.Is(err, errs.Gone) {
			t.Errorf("link older than a week: %v", err)
		}
	})
}

func TestPasswordReset(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "rey@acme.example", identity.RoleMember, pw)
		p := principalOf(t, env, "rey@acme.example")
		secret, _ := enrol(t, env, p)
		other, err := login(env, "rey@acme.example", pw, "")
		if err != nil {
			t.Fatal(err)
		}
		ask := func(email string) {
			t.Helper()
			if err := ids.RequestReset(ctx, identity.ResetRequest{Tenant: "acme", Email: email}); err != nil {
				t.Fatalf("reset request for %s: %v", email, err)
			}
		}
		// Unknown addresses and tenants get the same answer and no mail.
		ask("nobody@acme.example")
		if err := ids.RequestReset(ctx, identity.ResetRequest{Tenant: "nope", Email: "rey@acme.example"}); err != nil {
			t.Errorf("unknown tenant: %v", err)
		}
		if err := ids.RequestReset(ctx, identity.ResetRequest{Tenant: "acme", Email: "x"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("malformed email: %v", err)
		}
		ask("rey@acme.example")
		token := env.LinkToken(t, "rey@acme.example", "Reset")

		// A policy refusal leaves the link usable.
		if err := ids.ResetPassword(ctx, identity.LinkInput{Secret: token, Password: "rey@acme.example!!"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("password with the email in it: %v", err)
		}
		if err := ids.ResetPassword(ctx, identity.LinkInput{Secret: token, Password: newPassword}); err != nil {
			t.Fatal(err)
		}
		if err := ids.ResetPassword(ctx, identity.LinkInput{Secret: token, Password: newPassword + "!"}); !errs.Is(err, errs.Gone) {
			t.Errorf("link used twice: %v", err)
		}
		env.Mail.Wait(t, "rey@acme.example", "password was changed", 10*time.Second)
		// Every session ended; the old password is gone; the second factor
		// is still asked.
		if _, err := ids.AuthenticateSession(ctx, other.Session); err == nil {
			t.Error("a session survived the reset")
		}
		if _, err := login(env, "rey@acme.example", pw, ""); err != identity.ErrLoginFailed {
			t.Errorf("old password after reset: %v", err)
		}
		res, err := login(env, "rey@acme.example", newPassword, "")
		if err != nil || !res.MFARequired {
			t.Fatalf("reset bypassed the second factor: %+v %v", res, err)
		}
		_, err = ids.CompleteMFA(ctx, identity.StepUpInput{Session: res.Session, Method: identity.MethodTOTP, Code: code(t, env, secret, env.Now.Now())})
		if err != nil {
			t.Errorf("second factor after reset: %v", err)
		}

		// Three links an hour at most; the answer does not change.
		for range 4 {
			ask("rey@acme.example")
		}
		env.Mail.WaitCount(t, "rey@acme.example", "Reset", 3, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
		if got := len(env.Mail.To("rey@acme.example", "Reset")); got != 3 {
			t.Errorf("%d reset mails in an hour; want 3", got)
		}
		// A reset link dies after 30 minutes.
		env.Now.Advance(61 * time.Minute)
		ask("rey@acme.example")
		env.Mail.WaitCount(t, "rey@acme.example", "Reset", 4, 10*time.Second)
		late := env.LinkToken(t, "rey@acme.example", "Reset")
		env.Now.Advance(31 * time.Minute)
		if err := ids.ResetPassword(ctx, identity.LinkInput{Secret: late, Password: newPassword + "?"}); !errs.Is(err, errs.Gone) {
			t.Errorf("reset link after 31 minutes: %v", err)
		}
	})
}

// TestResetDoesNotUnlock: a locked account stays locked for unknown
// clients after a reset; the lock ends when it ends.
func TestResetDoesNotUnlock(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "lo@acme.example", identity.RoleMember, pw)
		for range 6 {
			if _, err := login(env, "lo@acme.example", "wrong wrong wrong", ""); err != identity.ErrLoginFailed {
				t.Fatal(err)
			}
		}
		if err := ids.RequestReset(ctx, identity.ResetRequest{Tenant: "acme", Email: "lo@acme.example"}); err != nil {
			t.Fatal(err)
		}
		token := env.LinkToken(t, "lo@acme.example", "Reset")
		if err := ids.ResetPassword(ctx, identity.LinkInput{Secret: token, Password: newPassword}); err != nil {
			t.Fatal(err)
		}
		if _, err := login(env, "lo@acme.example", newPassword, ""); err != identity.ErrLoginFailed {
			t.Errorf("reset lifted the lock: %v", err)
		}
		env.Now.Advance(61 * time.Minute)
		if _, err := login(env, "lo@acme.example", newPassword, ""); err != nil {
			t.Errorf("after the lock: %v", err)
		}
	})
}

// TestWrongCurrentPasswordCounts: guessing the current password through a
// session spends the account's lockout budget.
func TestWrongCurrentPasswordCounts(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		u := env.AddUser(t, "cp@acme.example", identity.RoleMember, pw)
		p := principalOf(t, env, "cp@acme.example")
		if err := ids.ChangePassword(ctx, p, pw, newPassword); err != nil {
			t.Fatalf("right current password: %v", err)
		}
		if l, _ := ids.LockoutOf(ctx, env.Tenant.ID, u.ID); l.Failures != 0 {
			t.Errorf("a right current password counted as a failure: %+v", l)
		}
		env.Mail.Wait(t, "cp@acme.example", "password was changed", 10*time.Second)
		for range 6 {
			if err := ids.ChangePassword(ctx, p, "guess guess guess", newPassword+"!"); !errs.Is(err, errs.Invalid) {
				t.Fatalf("wrong current password: %v", err)
			}
		}
		l, err := ids.LockoutOf(ctx, env.Tenant.ID, u.ID)
		if err != nil || l.Failures != 6 || l.LockedUntil == nil {
			t.Errorf("after 6 wrong current passwords: %+v %v", l, err)
		}
		if err := ids.ChangePassword(ctx, p, newPassword, newPassword+"!"); !errs.Is(err, errs.Invalid) {
			t.Errorf("change while locked: %v", err)
		}
	})
}
