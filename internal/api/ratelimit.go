package api

import (
	"container/list"
	"net/netip"
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

// maxBuckets bounds the limiter's memory (about 200 bytes a bucket).
const maxBuckets = 100_000

// limiter holds one bucket per client — an IPv4 address, or an IPv6 /64,
// which is what one subscriber usually holds — in least-recently-used
// order. A flood of new addresses evicts the buckets idle the longest;
// nobody is refused because the table is full. An evicted client starts
// again with a full bucket, so eviction never locks anyone out; the
// per-account lockout is what stops guessing at one account.
type limiter struct {
	cfg     RateLimit
	max     int
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front: most recently seen
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(cfg RateLimit) *limiter {
	return &limiter{cfg: cfg, max: maxBuckets, now: time.Now, buckets: map[string]*list.Element{}}
}

// allow spends one token of addr's bucket.
func (l *limiter) allow(addr string) bool {
	now := l.now()
	key := rateKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	// Forget buckets idle long enough to have refilled: the same as new.
	idle := time.Duration(float64(l.cfg.Burst)/l.cfg.PerMinute*float64(time.Minute)) + time.Second
	for e := l.lru.Back(); e != nil && now.Sub(e.Value.(*bucket).seen) > idle; e = l.lru.Back() {
		l.drop(e)
	}
	e, ok := l.buckets[key]
	if !ok {
		if l.lru.Len() >= l.max {
			l.drop(l.lru.Back())
		}
		e = l.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(rate.Limit(l.cfg.PerMinute/60), l.cfg.Burst)})
		l.buckets[key] = e
	}
	l.lru.MoveToFront(e)
	b := e.Value.(*bucket)
	b.seen = now
	return b.lim.AllowN(now, 1)
}

func (l *limiter) drop(e *list.Element) {
	delete(l.buckets, e.Value.(*bucket).key)
	l.lru.Remove(e)
}

// rateKey is addr's bucket: an IPv4 address as it is, an IPv6 address's
// /64 (one host can take any address in it).
func rateKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}
