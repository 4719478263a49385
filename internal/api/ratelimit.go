package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is a token bucket per client address.
type RateLimit struct {
	PerMinute float64
	Burst     int
}

// DefaultAuthRate bounds sign-in traffic per address: a burst of 20, then
// 10 a minute. Lockout protects each account; this protects the server
// and slows spraying across accounts.
var DefaultAuthRate = RateLimit{PerMinute: 10, Burst: 20}

// limiter holds one bucket per address, forgetting idle ones.
type limiter struct {
	cfg     RateLimit
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(cfg RateLimit) *limiter {
	return &limiter{cfg: cfg, buckets: map[string]*bucket{}}
}

// maxBuckets bounds memory under a flood of addresses: past it, idle
// buckets are dropped at once.
const maxBuckets = 100_000

func (l *limiter) allow(addr string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute || len(l.buckets) >= maxBuckets {
		// A bucket idle long enough to have refilled is the same as a new one.
		idle := time.Duration(float64(l.cfg.Burst)/l.cfg.PerMinute*float64(time.Minute)) + time.Second
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idle {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			return false
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.cfg.PerMinute/60), l.cfg.Burst)}
		l.buckets[addr] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
