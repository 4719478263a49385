package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/sms/smstest"
)

const phone = "+447700900456"

// withGateway runs fn on both engines with the webhook SMS provider
// posting to an in-process gateway.
func withGateway(t *testing.T, fn func(t *testing.T, env *coretest.Env, g *smstest.Gateway)) {
	coretest.Engines(t, func(t *testing.T, databaseURL string) {
		g := smstest.Start(t)
		fn(t, coretest.NewWith(t, databaseURL, func(c *config.Config, _ *core.Options) {
			c.SMSProvider, c.SMSWebhookURL, c.SMSWebhookSecret = "webhook", g.URL, smstest.Secret
		}), g)
	})
}

func enableSMS(t *testing.T, env *coretest.Env) {
	t.Helper()
	on := true
	if _, err := env.Core.Identity.UpdateSecurity(context.Background(), env.Tenant.ID, identity.SecurityPatch{SMSEnabled: &on}); err != nil {
		t.Fatal(err)
	}
}

// TestSMSFactor: opt-in per tenant; enrolment confirmed by the first code;
// at sign-in a code works once, for 5 minutes, with 5 tries; sending is
// limited; a wrong code spends the lockout budget.
func TestSMSFactor(t *testing.T) {
	withGateway(t, func(t *testing.T, env *coretest.Env, g *smstest.Gateway) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "sm@acme.example", identity.RoleMember, pw)
		allowFailures(t, env)          // the races and wrong tries below fail on purpose
		sent := len(g.Messages(phone)) // the gateway serves both engines
		p := principalOf(t, env, "sm@acme.example")
		if _, err := ids.EnrolSMS(ctx, p, phone); !errs.Is(err, errs.Conflict) {
			t.Fatalf("SMS before the tenant opted in: %v", err)
		}
		enableSMS(t, env)
		if _, err := ids.EnrolSMS(ctx, p, "not a number"); !errs.Is(err, errs.Invalid) {
			t.Errorf("bad number: %v", err)
		}
		e, err := ids.EnrolSMS(ctx, p, "+44 7700 900456")
		if err != nil || e.Phone != "…56" {
			t.Fatalf("enrol: %+v %v", e, err)
		}
		if _, err := ids.ConfirmSMS(ctx, p, "000000x"); !errs.Is(err, errs.Invalid) {
			t.Errorf("wrong first code: %v", err)
		}
		c, err := ids.ConfirmSMS(ctx, p, g.Code(t, phone))
		if err != nil || len(c.RecoveryCodes) != 10 {
			t.Fatalf("confirm: %+v %v", c, err)
		}

		res, err := login(env, "sm@acme.example", pw, "")
		if err != nil || !res.MFARequired || len(res.Methods) != 2 || res.Methods[1] != identity.MethodSMS {
			t.Fatalf("sign-in with an SMS factor: %+v %v", res, err)
		}
		// One code a minute: the enrolment code was just sent.
		if err := ids.SendSignInCode(ctx, res.Session); !errs.Is(err, errs.TooManyRequests) {
			t.Errorf("second code within a minute: %v", err)
		}
		env.Now.Advance(61 * time.Second)
		if err := ids.SendSignInCode(ctx, res.Session); err != nil {
			t.Fatal(err)
		}
		code := g.Code(t, phone)
		// Ten parallel uses of one code: one wins.
		if wins, _ := raceCode(t, env, "sm@acme.example", identity.MethodSMS, code); wins != 1 {
			t.Errorf("%d sign-ins with one SMS code; want 1", wins)
		}

		// Five tries per code, then even the right one is refused.
		env.Now.Advance(61 * time.Second)
		if err := ids.SendSignInCode(ctx, res.Session); err != nil {
			t.Fatal(err)
		}
		code = g.Code(t, phone)
		for range 5 {
			r, _ := login(env, "sm@acme.example", pw, "")
			if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: identity.MethodSMS, Code: "999999"}); err == nil {
				t.Fatal("a wrong code signed in")
			}
		}
		r, _ := login(env, "sm@acme.example", pw, "")
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: identity.MethodSMS, Code: code}); err == nil {
			t.Error("the right code after 5 wrong tries signed in")
		}

		// A code lives five minutes.
		env.Now.Advance(61 * time.Second)
		if err := ids.SendSignInCode(ctx, r.Session); err != nil {
			t.Fatal(err)
		}
		code = g.Code(t, phone)
		env.Now.Advance(5*time.Minute + time.Second)
		r, _ = login(env, "sm@acme.example", pw, "")
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: identity.MethodSMS, Code: code}); err == nil {
			t.Error("a code older than 5 minutes signed in")
		}
		// Five sends an hour: this is the fifth, the next is refused.
		env.Now.Advance(61 * time.Second)
		if err := ids.SendSignInCode(ctx, r.Session); err != nil {
			t.Errorf("fifth SMS within the hour: %v", err)
		}
		env.Now.Advance(61 * time.Second)
		if err := ids.SendSignInCode(ctx, r.Session); !errs.Is(err, errs.TooManyRequests) {
			t.Errorf("sixth SMS within the hour: %v", err)
		}
		if n := len(g.Messages(phone)) - sent; n != 5 {
			t.Errorf("%d messages sent; want 5", n)
		}
		// A gateway that is down gives 503, not a silent success.
		env.Now.Advance(time.Hour)
		g.Fail(true)
		r, _ = login(env, "sm@acme.example", pw, "")
		if err := ids.SendSignInCode(ctx, r.Session); !errs.Is(err, errs.Unavailable) {
			t.Errorf("gateway down: %v", err)
		}
		g.Fail(false)
	})
}
