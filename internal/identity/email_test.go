package identity_test

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

var emailLinkRE = regexp.MustCompile(`/account/email(?:-undo)?/([A-Za-z0-9_-]{43})\b`)

// emailLink waits for a mail to `to` about subject and returns the secret
// of the address link in it.
func emailLink(t *testing.T, env *coretest.Env, to, subject string) string {
	t.Helper()
	m := env.Mail.Wait(t, to, subject, 10*time.Second)
	sub := emailLinkRE.FindStringSubmatch(m.Text)
	if sub == nil {
		t.Fatalf("no address link in the mail %q: %q", m.Subject, m.Text)
	}
	return sub[1]
}

// TestEmailChange: a new sign-in address set by an admin takes effect only
// through the link mailed to it (once, within a day); the old address is
// then told, with a link that undoes the change — the old address back,
// every session and token ended, the password cleared with a reset link
// to the old address, the owners told, all audited.
func TestEmailChange(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ada@acme.example", "admin", pw)
		admin := principalOf(t, env, "ada@acme.example")
		u := env.AddUser(t, "mo@acme.example", "member", pw)
		session, err := login(env, "mo@acme.example", pw, "")
		if err != nil {
			t.Fatal(err)
		}
		token, _, err := ids.CreateToken(ctx, env.Tenant.ID, "mo@acme.example", "mine", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		email := func() string {
			t.Helper()
			a, err := ids.Account(ctx, env.Tenant.ID, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return a.Email
		}
		change := func(to string) string {
			t.Helper()
			if _, err := ids.UpdateUser(ctx, admin, u.ID, identity.UserPatch{Email: &to}); err != nil {
				t.Fatal(err)
			}
			if got := email(); got != "mo@acme.example" {
				t.Fatalf("the address changed before it was confirmed: %s", got)
			}
			return emailLink(t, env, to, "Confirm your new sign-in address")
		}

		// Not confirmed within a day: nothing changes, the link is dead.
		late := change("late@evil.example")
		env.Now.Advance(25 * time.Hour)
		if _, err := ids.ConfirmEmail(ctx, late, identity.Client{}); !errs.Is(err, errs.Gone) {
			t.Errorf("a confirmation after a day: %v", err)
		}
		// Confirmed: the new address signs in, the old one is told.
		secret := change("mo@attacker.example")
		if info, err := ids.EmailLinkInfo(ctx, secret, "confirm"); err != nil || info.Address != "mo@attacker.example" {
			t.Errorf("the confirmation page: %+v %v", info, err)
		}
		if _, err := ids.ConfirmEmail(ctx, secret, identity.Client{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ids.ConfirmEmail(ctx, secret, identity.Client{}); !errs.Is(err, errs.Gone) {
			t.Errorf("a confirmation link used twice: %v", err)
		}
		if got := email(); got != "mo@attacker.example" {
			t.Fatalf("after the confirmation: %s", got)
		}
		undo := emailLink(t, env, "mo@acme.example", "was changed")

		// "It was not me".
		if _, err := ids.UndoEmail(ctx, undo, identity.Client{}); err != nil {
			t.Fatal(err)
		}
		if got := email(); got != "mo@acme.example" {
			t.Errorf("after the undo: %s", got)
		}
		if _, err := ids.UndoEmail(ctx, undo, identity.Client{}); !errs.Is(err, errs.Gone) {
			t.Errorf("an undo link used twice: %v", err)
		}
		if _, err := ids.AuthenticateSession(ctx, session.Session); err == nil {
			t.Error("a session survived the undo")
		}
		if _, err := ids.Authenticate(ctx, token); err == nil {
			t.Error("a token survived the undo")
		}
		for _, addr := range []string{"mo@acme.example", "mo@attacker.example"} {
			if _, err := login(env, addr, pw, ""); err == nil {
				t.Errorf("the old password still signs in as %s", addr)
			}
		}
		env.LinkToken(t, "mo@acme.example", "is yours again") // the reset link
		env.Mail.Wait(t, "owner@acme.example", "was undone", 10*time.Second)
		got := actions(t, env, u.SubjectID)
		for _, a := range []string{"user.email.request", "user.email.change", "user.email.undo"} {
			if got[a] == 0 {
				t.Errorf("no %s in the audit trail: %v", a, got)
			}
		}
	})
}

// TestChangeOwnEmail: a person asks for a new sign-in address for
// themselves — signed in, never with a token — and it waits for the same
// confirmation; someone else's address is refused.
func TestChangeOwnEmail(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ann@acme.example", "member", pw)
		mo := env.AddUser(t, "mo@acme.example", "member", pw)
		self := principalOf(t, env, "mo@acme.example")
		token, err := ids.Authenticate(ctx, env.Token)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ids.ChangeOwnEmail(ctx, token, "owner@new.example"); !errs.Is(err, errs.Forbidden) {
			t.Errorf("with a token: %v", err)
		}
		if _, err := ids.ChangeOwnEmail(ctx, self, "ann@acme.example"); !errs.Is(err, errs.Invalid) {
			t.Errorf("someone else's address: %v", err)
		}
		if sent, err := ids.ChangeOwnEmail(ctx, self, "MO@acme.example"); err != nil || sent {
			t.Errorf("their own address again: %v %v", sent, err)
		}
		if sent, err := ids.ChangeOwnEmail(ctx, self, "mo@home.example"); err != nil || !sent {
			t.Fatalf("a new address: %v %v", sent, err)
		}
		if a, _ := ids.Account(ctx, env.Tenant.ID, mo.ID); a.Email != "mo@acme.example" {
			t.Fatalf("changed before the confirmation: %s", a.Email)
		}
		if _, err := ids.ConfirmEmail(ctx, emailLink(t, env, "mo@home.example", "Confirm your new sign-in address"), identity.Client{}); err != nil {
			t.Fatal(err)
		}
		if a, _ := ids.Account(ctx, env.Tenant.ID, mo.ID); a.Email != "mo@home.example" {
			t.Errorf("after the confirmation: %s", a.Email)
		}
		env.Mail.Wait(t, "mo@acme.example", "was changed", 10*time.Second)
	})
}

// TestConfirmEmailOnce: the new address and the spent link are one unit —
// of ten clicks on one confirmation link at once, one changes the address
// and tells the old one; every other is told the link is used, and the
// trail has one change.
func TestConfirmEmailOnce(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		u := env.AddUser(t, "mo@acme.example", "member", pw)
		owner := principalOf(t, env, "owner@acme.example")
		to := "mo@new.acme.example"
		if _, err := ids.UpdateUser(ctx, owner, u.ID, identity.UserPatch{Email: &to}); err != nil {
			t.Fatal(err)
		}
		secret := emailLink(t, env, to, "Confirm your new sign-in address")
		start := make(chan struct{})
		var wg sync.WaitGroup
		results := make(chan error, 10)
		for range 10 {
			wg.Go(func() {
				<-start
				_, err := ids.ConfirmEmail(ctx, secret, identity.Client{})
				results <- err
			})
		}
		close(start)
		wg.Wait()
		close(results)
		won := 0
		for err := range results {
			switch {
			case err == nil:
				won++
			case !errs.Is(err, errs.Gone):
				t.Errorf("a losing click: %v; want the link used (410)", err)
			}
		}
		if won != 1 {
			t.Errorf("%d clicks changed the address; want 1", won)
		}
		env.Mail.Wait(t, "mo@acme.example", "was changed", 10*time.Second)
		for action, want := range map[string]int{"subject.rectify": 1, "user.email.change": 1} {
			es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: action, Limit: 100})
			if err != nil || len(es) != want {
				t.Errorf("%s events: %d %v; want %d", action, len(es), err, want)
			}
		}
	})
}
