package password_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity/password"
)

func TestHashAndVerify(t *testing.T) {
	ctx := context.Background()
	h, err := password.NewHasher(password.Default, 2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(enc, "horse") {
		t.Fatalf("hash %q", enc)
	}
	if again, _ := h.Hash(ctx, "correct horse battery staple"); again == enc {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse battery staple": true, "correct horse battery stapl": false, "": false} {
		ok, rehash, err := h.Verify(ctx, pw, enc)
		if err != nil || ok != want || rehash {
			t.Errorf("Verify(%q) = %v, %v, %v; want %v", pw, ok, rehash, err, want)
		}
	}
	// NFKC: the decomposed and the full-width forms are the same password.
	enc2, _ := h.Hash(ctx, "Caf\u00e9 au lait 2026!")
	for _, variant := range []string{"Cafe\u0301 au lait 2026!", "Ｃａｆé au lait 2026!"} {
		if ok, _, _ := h.Verify(ctx, variant, enc2); !ok {
			t.Errorf("NFKC variant %q does not verify", variant)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=0,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaA"} {
		if ok, _, err := h.Verify(ctx, "x", bad); err == nil || ok {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
	if err := h.VerifyDummy(ctx, "anything"); err != nil {
		t.Errorf("VerifyDummy: %v", err)
	}
	if _, err := password.NewHasher(password.Params{Memory: 4096, Time: 1, Threads: 1}, 1, time.Second); err == nil {
		t.Error("parameters weaker than the default were accepted")
	}
}

func TestRehashWhenParametersRise(t *testing.T) {
	ctx := context.Background()
	old, _ := password.NewHasher(password.Default, 1, time.Second)
	enc, _ := old.Hash(ctx, "a long passphrase here")
	stronger, err := password.NewHasher(password.Params{Memory: 24 * 1024, Time: 3, Threads: 1}, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ok, rehash, err := stronger.Verify(ctx, "a long passphrase here", enc)
	if err != nil || !ok || !rehash {
		t.Fatalf("old hash under stronger params: ok=%v rehash=%v err=%v; want ok and rehash", ok, rehash, err)
	}
	if ok, rehash, _ := stronger.Verify(ctx, "wrong", enc); ok || rehash {
		t.Error("a wrong password asks for a rehash")
	}
	fresh, _ := stronger.Hash(ctx, "a long passphrase here")
	if _, rehash, _ := stronger.Verify(ctx, "a long passphrase here", fresh); rehash {
		t.Error("a current hash asks for a rehash")
	}
}

// TestConcurrencyIsBounded: with one slot and a short queue, a burst of
// hashes gets some ErrBusy (503) answers instead of unbounded memory.
func TestConcurrencyIsBounded(t *testing.T) {
	h, _ := password.NewHasher(password.Default, 1, 5*time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, done := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.Hash(context.Background(), "burst of sign-ins")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, password.ErrBusy):
				busy++
			case err == nil:
				done++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if busy == 0 || done == 0 {
		t.Fatalf("%d hashed, %d refused busy; want some of each", done, busy)
	}
	if errs.KindOf(password.ErrBusy) != errs.Unavailable {
		t.Error("ErrBusy must map to 503")
	}
}

func TestPolicy(t *testing.T) {
	blocked := password.CommonPasswords()
	if len(blocked) < 29000 {
		t.Fatalf("blocklist has %d entries; want about 30 000", len(blocked))
	}
	std := password.Policy{Preset: password.Standard}
	std2fa := password.Policy{Preset: password.Standard, TwoFactorEnforced: true}
	cx := password.Policy{Preset: password.Complex}
	ctxWords := []string{"Acme Widgets Ltd", "jane.doe@acmewidgets.co.uk"}
	cases := []struct {
		name   string
		policy password.Policy
		pw     string
		reason string // "" = accepted
	}{
		{"standard long passphrase", std, "purple elephants dance at noon", ""},
		{"standard 14 chars", std, "kestrelmoor-41", "at least 15"},
		{"standard with 2FA 12 chars", std2fa, "kestrelmoor4", ""},
		{"standard with 2FA 11 chars", std2fa, "kestrelmoo4", "at least 12"},
		{"no composition rules in standard", std, "allthelowercaseletters", ""},
		{"too long", std, strings.Repeat("abcdefgh", 17), "at most 128"},
		{"common password", std2fa, "qwertyuiop123", "common"},
		{"common password, other case", std2fa, "Password1234", "common"},
		{"common password with suffix", std, "sunshine2024!!!", "digits or symbols added"},
		{"one character repeated", std, strings.Repeat("z", 20), "repeat"},
		{"a short sequence repeated", std, "passwordpassword", "repeated"},
		{"three characters repeated", std, "xq7xq7xq7xq7xq7xq7", "repeated"},
		{"contains organisation", std, "my acme password is long", "organisation"},
		{"contains email local part", std, "jane.doe.is.the.best.here", "email"},
		{"contains email domain", std, "welcome-to-acmewidgets!", "email"},
		{"control characters", std, "tab\there is not allowed ok", "control"},
		{"complex accepted", cx, "Tr4vel-Light!", ""},
		{"complex without special", cx, "Travel4Light2", "mix letters, digits and special"},
		{"complex without digit", cx, "Travel-Light!", "mix letters, digits and special"},
		{"complex too short", cx, "Tr4v-L!x", "at least 10"},
		{"NFKC length: full-width counts once", std2fa, "ｋｅｓｔｒｅｌｍｏｏｒ４２", ""},
	}
	for _, c := range cases {
		err := c.policy.Check(c.pw, blocked, ctxWords...)
		if c.reason == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", c.name, err)
			}
			continue
		}
		e, ok := errs.As(err)
		if !ok || e.Kind != errs.Invalid || e.Field != "password" || !strings.Contains(e.Detail, c.reason) {
			t.Errorf("%s: %v; want a refusal of field password saying %q", c.name, err, c.reason)
			continue
		}
		if strings.Contains(e.Detail, c.pw) {
			t.Errorf("%s: the refusal echoes the password", c.name)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	h, _ := password.NewHasher(password.Default, 4, time.Minute)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "benchmark passphrase"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTestHasher: tests that are not about passwords may hash at argon2id's
// cheapest (refused outside test binaries: cmd/custodia's
// TestTestOptionsOnlyInTests); a real hasher asks to rehash what it made.
func TestTestHasher(t *testing.T) {
	ctx := context.Background()
	cheap, err := password.NewTestHasher(1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := cheap.Hash(ctx, "a long passphrase here")
	if err != nil || !strings.HasPrefix(enc, "$argon2id$v=19$m=8,t=1,p=1$") {
		t.Fatalf("cheap hash %q, %v", enc, err)
	}
	if ok, _, err := cheap.Verify(ctx, "a long passphrase here", enc); !ok || err != nil {
		t.Errorf("cheap hash does not verify: %v", err)
	}
	real, err := password.NewHasher(password.Default, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, _ := real.Verify(ctx, "a long passphrase here", enc); !ok || !rehash {
		t.Errorf("a real hasher on a cheap hash: ok=%v rehash=%v; want both", ok, rehash)
	}
}
