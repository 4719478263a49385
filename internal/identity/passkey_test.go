package identity_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/passkeytest"
)

// registerPasskey enrols key for the user behind p under name and returns
// the confirmation.
func registerPasskey(t *testing.T, env *coretest.Env, p identity.Principal, key *passkeytest.Authenticator, name string) identity.Confirmation {
	t.Helper()
	ctx := context.Background()
	opts, err := env.Core.Identity.EnrolPasskey(ctx, p, name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.Core.Identity.ConfirmPasskey(ctx, p, key.Create(t, mustJSON(t, opts)))
	if err != nil {
		t.Fatalf("confirm passkey: %v", err)
	}
	return c
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// passkeySignIn signs email in with the password and answers the passkey
// challenge of that session with key.
func passkeySignIn(t *testing.T, env *coretest.Env, email string, key *passkeytest.Authenticator) (string, []byte, error) {
	t.Helper()
	ctx := context.Background()
	r, err := login(env, email, pw, "")
	if err != nil || !r.MFARequired {
		t.Fatalf("sign in: %+v %v", r, err)
	}
	opts, err := env.Core.Identity.BeginPasskeySignIn(ctx, r.Session)
	if err != nil {
		t.Fatal(err)
	}
	answer := key.Get(t, mustJSON(t, opts))
	_, err = env.Core.Identity.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: identity.MethodPasskey, Credential: answer})
	return r.Session, answer, err
}

// TestPasskeyFactor: registration is checked (origin, challenge used
// once, no duplicate) and gives the first recovery codes; at sign-in an
// assertion answers one challenge of its own session once — replayed,
// raced, phished, from a cloned key or with a counter going back it is
// refused, and wrong answers spend the lockout budget.
func TestPasskeyFactor(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		allowFailures(t, env)
		u := env.AddUser(t, "pk@acme.example", identity.RoleMember, pw)
		p := principalOf(t, env, "pk@acme.example")
		key := passkeytest.New(t, env.Core.Config.PublicURL)

		opts, err := ids.EnrolPasskey(ctx, p, "Blue key")
		if err != nil {
			t.Fatal(err)
		}
		if handle, _ := opts.Response.User.ID.(protocol.URLEncodedBase64); opts.Response.RelyingParty.ID != "localhost" || string(handle) != p.UserID {
			t.Errorf("creation options: rp %q, user handle %q", opts.Response.RelyingParty.ID, opts.Response.User.ID)
		}
		// A phishing site's origin is refused, and the challenge is spent.
		phish := *key
		phish.Origin = "https://acme-login.example"
		if _, err := ids.ConfirmPasskey(ctx, p, phish.Create(t, mustJSON(t, opts))); !errs.Is(err, errs.Invalid) {
			t.Errorf("registration from another origin: %v", err)
		}
		if _, err := ids.ConfirmPasskey(ctx, p, key.Create(t, mustJSON(t, opts))); !errs.Is(err, errs.Conflict) {
			t.Errorf("second answer to one registration challenge: %v", err)
		}
		if _, err := ids.ConfirmPasskey(ctx, p, []byte(`{"id":"x"}`)); !errs.Is(err, errs.Invalid) {
			t.Errorf("malformed credential: %v", err)
		}
		if _, err := ids.EnrolPasskey(ctx, p, "bad\x00name"); !errs.Is(err, errs.Invalid) {
			t.Errorf("control character in the name: %v", err)
		}
		if c := registerPasskey(t, env, p, key, "Blue key"); len(c.RecoveryCodes) != 10 {
			t.Errorf("first factor gave %d recovery codes", len(c.RecoveryCodes))
		}
		fs, err := ids.Factors(ctx, p.TenantID, p.UserID)
		if err != nil || len(fs) != 1 || fs[0].Kind != identity.MethodPasskey || fs[0].Name != "Blue key" || !fs[0].Confirmed {
			t.Fatalf("factors: %+v %v", fs, err)
		}
		// The same key again is excluded by the options, and refused if it
		// answers anyway.
		again, err := ids.EnrolPasskey(ctx, p, "Same key")
		if err != nil {
			t.Fatal(err)
		}
		if ex := again.Response.CredentialExcludeList; len(ex) != 1 || ex[0].CredentialID.String() != key.CredentialID() {
			t.Errorf("exclude list %+v", ex)
		}
		again.Response.CredentialExcludeList = nil
		if _, err := ids.ConfirmPasskey(ctx, p, key.Create(t, mustJSON(t, again))); !errs.Is(err, errs.Invalid) {
			t.Errorf("registering the same passkey twice: %v", err)
		}

		res, err := login(env, "pk@acme.example", pw, "")
		if err != nil || !res.MFARequired || len(res.Methods) != 2 || res.Methods[0] != identity.MethodPasskey {
			t.Fatalf("sign-in with a passkey: %+v %v", res, err)
		}
		// An answer with no challenge asked for is a clear error, and costs nothing.
		before, _ := ids.LockoutOf(ctx, p.TenantID, u.ID)
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: res.Session, Method: identity.MethodPasskey,
			Credential: key.Get(t, []byte(`{"publicKey":{"challenge":"AAAA"}}`))}); !errs.Is(err, errs.Conflict) {
			t.Errorf("answer without a challenge: %v", err)
		}
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: res.Session, Method: identity.MethodPasskey}); !errs.Is(err, errs.Invalid) {
			t.Errorf("no credential: %v", err)
		}

		_, answer, err := passkeySignIn(t, env, "pk@acme.example", key)
		if err != nil {
			t.Fatalf("passkey sign-in: %v", err)
		}
		// Replaying that answer on a new session's challenge fails.
		r, _ := login(env, "pk@acme.example", pw, "")
		if _, err := ids.BeginPasskeySignIn(ctx, r.Session); err != nil {
			t.Fatal(err)
		}
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: identity.MethodPasskey, Credential: answer}); err != identity.ErrLoginFailed {
			t.Errorf("replayed assertion: %v", err)
		}
		// A phishing origin, a cloned key (same id, other private key) and a
		// counter going backwards are refused.
		if _, _, err := passkeySignIn(t, env, "pk@acme.example", &phish); err != identity.ErrLoginFailed {
			t.Errorf("assertion for another origin: %v", err)
		}
		if _, _, err := passkeySignIn(t, env, "pk@acme.example", key.Clone(t)); err != identity.ErrLoginFailed {
			t.Errorf("cloned key: %v", err)
		}
		back := *key
		back.Counter = 0
		if _, _, err := passkeySignIn(t, env, "pk@acme.example", &back); err != identity.ErrLoginFailed {
			t.Errorf("counter going back: %v", err)
		}
		if n := actions(t, env, u.SubjectID)["mfa.passkey.counter/denied"]; n != 1 {
			t.Errorf("%d counter warnings audited; want 1", n)
		}
		after, _ := ids.LockoutOf(ctx, p.TenantID, u.ID)
		if after.Failures-before.Failures != 4 {
			t.Errorf("failures went from %d to %d; want 4 more (replay, origin, clone, counter)", before.Failures, after.Failures)
		}
		if _, _, err := passkeySignIn(t, env, "pk@acme.example", key); err != nil {
			t.Errorf("the real key after the refusals: %v", err)
		}

		// Ten parallel answers to one challenge: one wins.
		r, _ = login(env, "pk@acme.example", pw, "")
		ch, err := ids.BeginPasskeySignIn(ctx, r.Session)
		if err != nil {
			t.Fatal(err)
		}
		answer = key.Get(t, mustJSON(t, ch))
		same := make([]identity.StepUpInput, 10)
		for i := range same {
			same[i] = identity.StepUpInput{Session: r.Session, Method: identity.MethodPasskey, Credential: answer}
		}
		if wins := race(ids, same); wins != 1 {
			t.Errorf("%d sign-ins with one assertion; want 1", wins)
		}
		// Ten sessions answered at once with the same counter value (a
		// cloned key racing the real one): one wins.
		clones := make([]identity.StepUpInput, 10)
		count := key.Counter
		for i := range clones {
			r, _ := login(env, "pk@acme.example", pw, "")
			ch, err := ids.BeginPasskeySignIn(ctx, r.Session)
			if err != nil {
				t.Fatal(err)
			}
			key.Counter = count
			clones[i] = identity.StepUpInput{Session: r.Session, Method: identity.MethodPasskey, Credential: key.Get(t, mustJSON(t, ch))}
		}
		if wins := race(ids, clones); wins != 1 {
			t.Errorf("%d sign-ins with one counter value; want 1", wins)
		}

		// A synced passkey keeps no counter: the challenge alone guards it.
		synced := passkeytest.New(t, env.Core.Config.PublicURL)
		synced.NoCounter = true
		registerPasskey(t, env, p, synced, "Phone")
		for i := range 2 {
			if _, _, err := passkeySignIn(t, env, "pk@acme.example", synced); err != nil {
				t.Errorf("sign-in %d with a counterless passkey: %v", i, err)
			}
		}
		// Removing both passkeys leaves no second factor.
		fs, _ = ids.Factors(ctx, p.TenantID, p.UserID)
		for _, f := range fs {
			if err := ids.RemoveFactor(ctx, p, f.ID); err != nil {
				t.Fatal(err)
			}
		}
		if res, err := login(env, "pk@acme.example", pw, ""); err != nil || res.MFARequired {
			t.Errorf("after removing the passkeys: %+v %v", res, err)
		}
	})
}

// race runs the step-ups at once and counts those that succeeded.
func race(ids *identity.Service, ins []identity.StepUpInput) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	wins := 0
	for _, in := range ins {
		wg.Go(func() {
			_, err := ids.CompleteMFA(context.Background(), in)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			}
		})
	}
	wg.Wait()
	return wins
}

// TestPasskeysNeedAHostName: a public URL with an IP address cannot be a
// WebAuthn relying party; the refusal says what to configure.
func TestPasskeysNeedAHostName(t *testing.T) {
	env := coretest.NewWith(t, "", func(c *config.Config, _ *core.Options) { c.PublicURL = "https://192.0.2.10:8443" })
	env.AddUser(t, "ip@acme.example", identity.RoleMember, pw)
	p := principalOf(t, env, "ip@acme.example")
	if _, err := env.Core.Identity.EnrolPasskey(context.Background(), p, ""); !errs.Is(err, errs.Conflict) {
		t.Errorf("passkey with an IP relying party: %v", err)
	}
}
