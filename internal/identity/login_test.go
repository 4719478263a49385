package identity_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const pw = coretest.Password

func login(env *coretest.Env, email, password, device string) (identity.LoginResult, error) {
	return env.Core.Identity.Login(context.Background(), identity.LoginInput{Tenant: "acme", Email: email,
		Password: password, Device: device, Client: identity.Client{IP: "192.0.2.7", UserAgent: "test"}})
}

// TestLockoutIsExactUnderConcurrency fires 200 wrong passwords at once: the
// counter ends at exactly the threshold, only that many hashes are
// computed, one lock event and one email result, and then even the right
// password is refused — except from a device the owner signed in on before.
func TestLockoutIsExactUnderConcurrency(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "sam@acme.example", "member", pw)
		known, err := login(env, "sam@acme.example", pw, "")
		if err != nil || known.Device == "" {
			t.Fatalf("first sign-in: %+v %v", known, err)
		}
		before := ids.Hasher().Hashes()
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range 200 {
			wg.Go(func() {
				if _, err := login(env, "sam@acme.example", "wrong password, clearly", ""); err == identity.ErrLoginFailed {
					refused.Add(1)
				} else {
					t.Errorf("wrong password: %v", err)
				}
			})
		}
		wg.Wait()
		u, err := ids.UserByEmail(ctx, env.Tenant.ID, "sam@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		l, err := ids.LockoutOf(ctx, env.Tenant.ID, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if refused.Load() != 200 || l.Failures != 6 || l.LockedUntil == nil {
			t.Fatalf("refused %d, lockout %+v; want 200 refused, 6 failures, locked", refused.Load(), l)
		}
		if n := ids.Hasher().Hashes() - before; n != 6 {
			t.Errorf("%d hashes computed for 200 attempts; want 6 (none once locked)", n)
		}
		if d := time.Until(*l.LockedUntil); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("locked for %s; want 1 hour", d)
		}
		counts := actions(t, env, u.SubjectID)
		if counts["user.lock"] != 1 || counts["auth.login/failure"] != 6 || counts["auth.login/denied"] != 194 {
			t.Errorf("audit: %v", counts)
		}
		m := env.Mail.Wait(t, "sam@acme.example", "locked", 10*time.Second)
		if !strings.Contains(m.Text, "60 minutes") {
			t.Errorf("lock mail: %q", m.Text)
		}
		// The right password from an unknown client: refused like a wrong one.
		if _, err := login(env, "sam@acme.example", pw, ""); err != identity.ErrLoginFailed {
			t.Errorf("right password while locked: %v", err)
		}
		// The owner's known device is not locked out.
		if res, err := login(env, "sam@acme.example", pw, known.Device); err != nil || res.Session == "" {
			t.Errorf("known device while the account is locked: %v", err)
		}
		// An hour later the lock is over.
		env.Now.Advance(61 * time.Minute)
		if _, err := login(env, "sam@acme.example", pw, ""); err != nil {
			t.Errorf("after the lock: %v", err)
		}
		if got := len(env.Mail.All()); got != 1 {
			t.Errorf("%d mails; want exactly one lock notice", got)
		}
	})
}

// TestKnownDeviceHasItsOwnBudget: failures on a known device lock only that
// device; the account's budget for other clients is untouched, and an
// admin unlock clears the account.
func TestKnownDeviceHasItsOwnBudget(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		u := env.AddUser(t, "kit@acme.example", "member", pw)
		first, err := login(env, "kit@acme.example", pw, "")
		if err != nil {
			t.Fatal(err)
		}
		for range 6 {
			if _, err := login(env, "kit@acme.example", "not the password!", first.Device); err != identity.ErrLoginFailed {
				t.Fatal(err)
			}
		}
		if _, err := login(env, "kit@acme.example", pw, first.Device); err != identity.ErrLoginFailed {
			t.Errorf("device past its budget signed in: %v", err)
		}
		if l, _ := ids.LockoutOf(ctx, env.Tenant.ID, u.ID); l.Failures != 0 || l.LockedUntil != nil {
			t.Errorf("device failures spent the account's budget: %+v", l)
		}
		if _, err := login(env, "kit@acme.example", pw, ""); err != nil {
			t.Errorf("another client: %v", err)
		}
		// Lock the account from unknown clients, then unlock it as an admin.
		for range 6 {
			_, _ = login(env, "kit@acme.example", "not the password!", "")
		}
		if _, err := login(env, "kit@acme.example", pw, ""); err != identity.ErrLoginFailed {
			t.Fatalf("not locked: %v", err)
		}
		if err := ids.Unlock(ctx, env.Tenant.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := login(env, "kit@acme.example", pw, ""); err != nil {
			t.Errorf("after unlock: %v", err)
		}
	})
}

// TestLockoutSettings: threshold and duration come from the tenant.
func TestLockoutSettings(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		three, five := 3, 5
		if _, err := env.Core.Identity.UpdateSecurity(ctx, env.Tenant.ID, identity.SecurityPatch{LockoutThreshold: &three, LockoutMinutes: &five}); err != nil {
			t.Fatal(err)
		}
		u := env.AddUser(t, "ivy@acme.example", "member", pw)
		for range 3 {
			_, _ = login(env, "ivy@acme.example", "not the password!", "")
		}
		l, _ := env.Core.Identity.LockoutOf(ctx, env.Tenant.ID, u.ID)
		if l.Failures != 3 || l.LockedUntil == nil || time.Until(*l.LockedUntil) > 6*time.Minute {
			t.Fatalf("lockout %+v; want 3 failures, locked for 5 minutes", l)
		}
		env.Now.Advance(6 * time.Minute)
		if _, err := login(env, "ivy@acme.example", pw, ""); err != nil {
			t.Errorf("after 5 minutes: %v", err)
		}
	})
}

func code(t testing.TB, env *coretest.Env, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrol sets up TOTP for the user behind principal p and returns the secret
// and the recovery codes.
func enrol(t *testing.T, env *coretest.Env, p identity.Principal) (string, []string) {
	t.Helper()
	ctx := context.Background()
	e, err := env.Core.Identity.EnrolTOTP(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.QRCode, "data:image/png;base64,") || !strings.HasPrefix(e.URL, "otpauth://totp/") {
		t.Errorf("enrolment %+v", e)
	}
	if _, err := env.Core.Identity.ConfirmTOTP(ctx, p, "000000x"); !errs.Is(err, errs.Invalid) {
		t.Errorf("wrong first code: %v", err)
	}
	// The code of the previous step confirms (clock drift), leaving the
	// current one for the first sign-in.
	c, err := env.Core.Identity.ConfirmTOTP(ctx, p, code(t, env, e.Secret, env.Now.Now().Add(-30*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	return e.Secret, c.RecoveryCodes
}

// allowFailures raises the lockout threshold to its maximum (20), for tests
// that fail on purpose more than 6 times.
func allowFailures(t *testing.T, env *coretest.Env) {
	t.Helper()
	n := 20
	if _, err := env.Core.Identity.UpdateSecurity(context.Background(), env.Tenant.ID, identity.SecurityPatch{LockoutThreshold: &n}); err != nil {
		t.Fatal(err)
	}
}

func principalOf(t *testing.T, env *coretest.Env, email string) identity.Principal {
	t.Helper()
	res, err := login(env, email, pw, "")
	if err != nil || res.MFARequired {
		t.Fatalf("sign in: %+v %v", res, err)
	}
	p, err := env.Core.Identity.AuthenticateSession(context.Background(), res.Session)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTOTPCodesWorkOnce: a code completes one sign-in; the same code again,
// or in parallel, is refused.
func TestTOTPCodesWorkOnce(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		allowFailures(t, env)
		env.AddUser(t, "ann@acme.example", "member", pw)
		secret, codes := enrol(t, env, principalOf(t, env, "ann@acme.example"))
		if len(codes) != 10 {
			t.Fatalf("%d recovery codes", len(codes))
		}
		res, err := login(env, "ann@acme.example", pw, "")
		if err != nil || !res.MFARequired || strings.Join(res.Methods, ",") != "recovery,totp" || res.Device != "" {
			t.Fatalf("login with TOTP: %+v %v", res, err)
		}
		if _, err := ids.AuthenticateSession(ctx, res.Session); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("pending session used as a full one: %v", err)
		}
		now := code(t, env, secret, env.Now.Now())
		// Many sessions answer with the same code at once: exactly one wins.
		if wins, _ := raceCode(t, env, "ann@acme.example", identity.MethodTOTP, now); wins != 1 {
			t.Fatalf("one code completed %d sign-ins; want 1", wins)
		}
		// The first session replays it later: refused.
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: res.Session, Method: "totp", Code: now}); err != identity.ErrLoginFailed {
			t.Errorf("replayed code: %v", err)
		}
		// The next step's code works, rotates the session secret, and makes
		// the client a known device.
		env.Now.Advance(30 * time.Second)
		up, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: res.Session, Method: "totp", Code: code(t, env, secret, env.Now.Now())})
		if err != nil || up.Session == res.Session || up.Device == "" {
			t.Fatalf("CompleteMFA: %+v %v", up, err)
		}
		if _, err := ids.AuthenticateSession(ctx, res.Session); err == nil {
			t.Error("the session secret from before the second factor still works")
		}
		if p, err := ids.AuthenticateSession(ctx, up.Session); err != nil || p.Enrolment {
			t.Errorf("rotated session: %+v %v", p, err)
		}
	})
}

// TestRecoveryCodes: ten codes of at least 112 bits, kept only keyed-hashed,
// each usable once — also when two sign-ins race for the same one.
func TestRecoveryCodes(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		allowFailures(t, env)
		env.AddUser(t, "bo@acme.example", "member", pw)
		_, codes := enrol(t, env, principalOf(t, env, "bo@acme.example"))
		seen := map[string]bool{}
		for _, c := range codes {
			if n := len(strings.ReplaceAll(c, "-", "")); n*5 < 112 || seen[c] {
				t.Errorf("code %q: %d bits or repeated", c, n*5)
			}
			seen[c] = true
		}
		stored := sqldbtest.Strings(t, env.Core.DB, "SELECT hash FROM recovery_codes")
		if len(stored) != 10 {
			t.Errorf("%d codes stored", len(stored))
		}
		for _, v := range stored {
			for _, c := range codes {
				if len(v) != 32 || strings.Contains(v, strings.ReplaceAll(c, "-", "")) || strings.Contains(v, c) {
					t.Errorf("recovery code not stored as a MAC")
				}
			}
		}
		// Typed in upper case with spaces: still the same code.
		c := strings.ToUpper(strings.ReplaceAll(codes[0], "-", " "))
		wins, up := raceCode(t, env, "bo@acme.example", identity.MethodRecovery, c)
		if wins != 1 || up.Remaining != 9 {
			t.Fatalf("one recovery code completed %d sign-ins (%d codes left); want 1 (9 left)", wins, up.Remaining)
		}
		r, _ := login(env, "bo@acme.example", pw, "")
		if _, err := ids.CompleteMFA(ctx, identity.StepUpInput{Session: r.Session, Method: "recovery", Code: codes[1]}); err != nil {
			t.Errorf("second code: %v", err)
		}
	})
}

// actions counts the audit events about a subject by action, and by
// action/outcome when the outcome is not success.
func actions(t *testing.T, env *coretest.Env, subjectID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	rd := audit.NewReader(env.Core.DB, env.Core.Keys)
	cursor := ""
	for {
		es, next, err := rd.Query(context.Background(), env.Tenant.ID, audit.Filter{SubjectID: subjectID, Cursor: cursor, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			k := e.Action
			if e.Outcome != audit.Success {
				k += "/" + e.Outcome
			}
			out[k]++
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// raceCode signs email in ten times and answers all ten second-factor
// prompts with the same code at once. It returns how many succeeded and the
// result of the one that did; a failure other than ErrLoginFailed fails
// the test.
func raceCode(t *testing.T, env *coretest.Env, email, method, code string) (int, identity.StepUpResult) {
	t.Helper()
	var sessions []string
	for range 10 {
		r, err := login(env, email, pw, "")
		if err != nil || !r.MFARequired {
			t.Fatalf("sign in: %+v %v", r, err)
		}
		sessions = append(sessions, r.Session)
	}
	var mu sync.Mutex
	var wins int
	var won identity.StepUpResult
	var wg sync.WaitGroup
	for _, ss := range sessions {
		wg.Go(func() {
			up, err := env.Core.Identity.CompleteMFA(context.Background(), identity.StepUpInput{Session: ss, Method: method, Code: code})
			if err != nil && err != identity.ErrLoginFailed {
				t.Errorf("CompleteMFA: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins, won = wins+1, up
			}
		})
	}
	wg.Wait()
	return wins, won
}

// TestRehashOnLogin: when the operator raises the argon2id parameters, a
// password hashed with the old ones is rehashed at the next sign-in, and
// still signs in afterwards.
func TestRehashOnLogin(t *testing.T) {
	stronger := password.Params{Memory: 24 * 1024, Time: 3, Threads: 1}
	coretest.RunWith(t, func(_ *config.Config, o *core.Options) { o.Password, o.Test.CheapHash = stronger, false }, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		u := env.AddUser(t, "old@acme.example", "member", "")
		weak, err := password.NewHasher(password.Default, 1, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		old, err := weak.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		stored := func() string {
			var h string
			if err := env.Core.DB.Read().QueryRow(ctx, "SELECT password_hash FROM users WHERE tenant_id = ? AND id = ?",
				env.Tenant.ID, u.ID).Scan(&h); err != nil {
				t.Fatal(err)
			}
			return h
		}
		if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ?", old, env.Tenant.ID, u.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := login(env, "old@acme.example", pw, ""); err != nil {
			t.Fatal(err)
		}
		if h := stored(); !strings.HasPrefix(h, "$argon2id$v=19$m=24576,t=3,p=1$") {
			t.Fatalf("hash after sign-in %q; want the stronger parameters", h)
		}
		if _, err := login(env, "old@acme.example", pw, ""); err != nil {
			t.Errorf("sign-in with the rehashed password: %v", err)
		}
	})
}
