package api

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func testLimiter(max int) (*limiter, *time.Time) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	l := newLimiter(RateLimit{PerMinute: 10, Burst: 3})
	l.max, l.now = max, func() time.Time { return now }
	return l, &now
}

// A flood of distinct addresses keeps the table bounded and locks nobody
// outside it out; each address, and each IPv6 /64, keeps its own limit.
func TestLimiterUnderAFlood(t *testing.T) {
	l, _ := testLimiter(1000)
	for i := range 3 {
		if !l.allow("198.51.100.7") {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	if l.allow("198.51.100.7") {
		t.Fatal("the fourth request of a burst of 3 allowed")
	}
	// 5 000 addresses from as many /64s, each trying twice.
	for i := range 5000 {
		a := fmt.Sprintf("2001:db8:%x:%x::1", i/0x10000, i%0x10000)
		l.allow(a)
		l.allow(a)
	}
	if n := len(l.buckets); n > 1000 || l.lru.Len() != n {
		t.Fatalf("%d buckets (list %d) after the flood; at most 1000", n, l.lru.Len())
	}
	for _, a := range []string{"203.0.113.9", "2001:db8:ffff::1", "192.0.2.1"} {
		if !l.allow(a) {
			t.Errorf("%s, outside the flood, refused", a)
		}
	}
	// Any address in one /64 is the same client; another /64 is not.
	for i := range 3 {
		if !l.allow(fmt.Sprintf("2001:db8:aaaa:1::%x", i+1)) {
			t.Fatalf("address %d of the /64 refused within the burst", i+1)
		}
	}
	if l.allow("2001:db8:aaaa:1:ffff:ffff:ffff:ffff") {
		t.Error("a fourth address of the same /64 escaped the limit")
	}
	if !l.allow("2001:db8:aaaa:2::1") {
		t.Error("the next /64 refused")
	}
	// An IPv4 address written as IPv6 is the same client.
	l.allow("192.0.2.50")
	l.allow("::ffff:192.0.2.50")
	l.allow("192.0.2.50")
	if l.allow("::ffff:192.0.2.50") {
		t.Error("an IPv4-mapped address escaped its IPv4 bucket")
	}
}

// Idle buckets are forgotten without a sweep of the whole table, and the
// limit holds while a client keeps trying.
func TestLimiterForgetsIdleBuckets(t *testing.T) {
	l, now := testLimiter(1000)
	for i := range 500 {
		l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	for range 4 {
		l.allow("192.0.2.1")
	}
	*now = now.Add(19 * time.Second) // 3 tokens at 10 a minute take 18 s
	if !l.allow("192.0.2.1") {
		t.Error("a token should have come back")
	}
	*now = now.Add(time.Minute)
	l.allow("192.0.2.2")
	if n := len(l.buckets); n != 1 {
		t.Errorf("%d buckets after a minute idle; want only the one just used", n)
	}
}

// The sign-in routes are the limited ones: the routes table says so in
// its guard column, not a path test in the middleware. (The privacy
// portal's form, a page of internal/web, spends from the same budget.)
func TestLimitedRoutes(t *testing.T) {
	var got []string
	for _, rt := range (&API{}).Routes() {
		if rt.Limited() {
			got = append(got, rt.Path)
		}
		if strings.HasPrefix(rt.Path, "/api/v1/auth/") && !rt.Limited() {
			t.Errorf("%s %s signs in or out but is not rate-limited", rt.Method, rt.Path)
		}
	}
	if !slices.Contains(got, "/api/v1/auth/login") || len(got) != 10 {
		t.Errorf("limited routes: %v", got)
	}
}
