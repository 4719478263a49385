// Package password hashes and checks account passwords: argon2id in PHC
// strings with parameters that can rise over time (old hashes verify and
// ask to be rehashed), a bound on concurrent hashes so memory never grows
// without limit, a dummy verification for unknown accounts, and the
// tenant password policy (presets, blocklist, context words).
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/errs"
)

// Params are argon2id parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// Default is OWASP's argon2id baseline: m=19 MiB, t=2, p=1.
var Default = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// Hasher hashes and verifies passwords with at most a fixed number of
// hashes running at once.
type Hasher struct {
	params Params
	slots  chan struct{}
	wait   time.Duration
	dummy  string

	hashes  atomic.Int64 // argon2 computations done
	typical atomic.Int64 // moving average of one verification, in nanoseconds
}

// ErrBusy is returned when no hashing slot frees up within the queue timeout.
var ErrBusy = errs.E(errs.Unavailable, "too many sign-ins are being checked right now; retry in a moment")

// NewHasher returns a Hasher with params (which may not be weaker than
// Default), running at most concurrent hashes and queueing a caller for at
// most wait.
func NewHasher(p Params, concurrent int, wait time.Duration) (*Hasher, error) {
	if p.Memory < Default.Memory || p.Time < Default.Time || p.Threads < 1 {
		return nil, fmt.Errorf("argon2id parameters m=%d,t=%d,p=%d are weaker than m=%d,t=%d,p=%d",
			p.Memory, p.Time, p.Threads, Default.Memory, Default.Time, Default.Threads)
	}
	return newHasher(p, concurrent, wait)
}

// Cheapest are argon2id's cheapest parameters (8 KiB, one pass): a hash
// costs microseconds instead of tens of milliseconds.
var Cheapest = Params{Memory: 8, Time: 1, Threads: 1}

// ErrTestOnly is returned when a hasher below the floor is asked for
// outside a test binary.
var ErrTestOnly = errors.New("a cheap password hasher outside a test binary")

// NewTestHasher returns a Hasher with the Cheapest parameters, for tests
// that are not about passwords. Outside a test binary (testing.Testing) it
// returns ErrTestOnly: the production floor stays.
func NewTestHasher(concurrent int, wait time.Duration) (*Hasher, error) {
	if !testing.Testing() {
		return nil, ErrTestOnly
	}
	return newHasher(Cheapest, concurrent, wait)
}

func newHasher(p Params, concurrent int, wait time.Duration) (*Hasher, error) {
	if concurrent < 1 {
		return nil, fmt.Errorf("concurrent hashes must be at least 1")
	}
	h := &Hasher{params: p, slots: make(chan struct{}, concurrent), wait: wait}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	h.dummy = encode(p, salt, argon2.IDKey([]byte("custodia dummy"), salt, p.Time, p.Memory, p.Threads, keyLen))
	return h, nil
}

func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// normalize is what is hashed: the NFKC form, so that a password typed on
// another keyboard or OS composes to the same bytes.
func normalize(pw string) []byte { return []byte(norm.NFKC.String(pw)) }

// Hash returns the PHC string of password under the hasher's parameters.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := h.params
	h.hashes.Add(1)
	return encode(p, salt, argon2.IDKey(normalize(password), salt, p.Time, p.Memory, p.Threads, keyLen)), nil
}

// Verify reports whether password matches encoded, and whether encoded
// should be replaced by a fresh Hash because its parameters are weaker than
// the hasher's.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return false, false, err
	}
	defer release()
	start := time.Now()
	got := argon2.IDKey(normalize(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	h.observe(time.Since(start))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	rehash = p.Memory < h.params.Memory || p.Time < h.params.Time || p.Threads < h.params.Threads
	return ok, ok && rehash, nil
}

func (h *Hasher) observe(d time.Duration) {
	h.hashes.Add(1)
	for {
		old := h.typical.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if h.typical.CompareAndSwap(old, next) {
			return
		}
	}
}

// Hashes is the number of argon2 computations done so far.
func (h *Hasher) Hashes() int64 { return h.hashes.Load() }

// Pause waits as long as a verification typically takes, without hashing:
// a refused attempt (a locked account) then costs the caller the same time
// as a checked one, and the server nothing.
func (h *Hasher) Pause(ctx context.Context) {
	d := time.Duration(h.typical.Load())
	if d == 0 {
		d = 40 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// VerifyDummy does the work of a verification against nothing, so that an
// unknown account costs the same time as a known one. It always fails.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	_, _, err := h.Verify(ctx, password, h.dummy)
	return err
}

var b64 = base64.RawStdEncoding

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decode parses a PHC argon2id string.
func decode(s string) (Params, []byte, []byte, error) {
	var p Params
	bad := fmt.Errorf("password hash is not a PHC argon2id string")
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, bad
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, bad
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.Memory > 4<<20 {
		return p, nil, nil, bad
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return p, nil, nil, bad
	}
	return p, salt, key, nil
}
