// Package smstest runs an in-process SMS gateway for tests: an HTTP server
// that receives the webhook provider's signed posts, checks the signature
// and keeps the messages.
package smstest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/sms"
)

// Secret is the webhook secret the gateway expects.
const Secret = "smstest-secret-0123456789abcdef0123"

// Gateway is a running test gateway.
type Gateway struct {
	URL string

	mu       sync.Mutex
	messages []sms.Message
	failing  bool
}

// Start runs a gateway until the test ends.
func Start(t testing.TB) *Gateway {
	g := &Gateway{}
	srv := httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("X-Custodia-Signature") != sms.Sign([]byte(Secret), r.Header.Get("X-Custodia-Timestamp"), body) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m sms.Message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failing {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	g.messages = append(g.messages, m)
	w.WriteHeader(http.StatusAccepted)
}

// Fail makes the gateway refuse messages (or accept them again).
func (g *Gateway) Fail(failing bool) {
	g.mu.Lock()
	g.failing = failing
	g.mu.Unlock()
}

// Messages returns every message received for to.
func (g *Gateway) Messages(to string) []sms.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []sms.Message
	for _, m := range g.messages {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

// Code returns the code in the newest message to `to`, failing the test
// when there is none.
func (g *Gateway) Code(t testing.TB, to string) string {
	t.Helper()
	ms := g.Messages(to)
	if len(ms) == 0 {
		t.Fatalf("no SMS to %s", to)
	}
	c := codeRE.FindString(ms[len(ms)-1].Text)
	if c == "" {
		t.Fatalf("no code in %q", ms[len(ms)-1].Text)
	}
	return c
}
