package sqldb

import (
	"context"
	"fmt"
	"sync"
)

// Epochs count the changes to the rows the in-memory caches copy. Triggers
// (migration 0036) move them inside the transaction of each change, so a
// change and its epoch commit together, whoever made it — a request on any
// node, the CLI, a restore's replay, a hand-made UPDATE.
type Epochs struct {
	Access   int64 // api_tokens, users, tenants: who a token is, what it may do, who has an account
	Subjects int64 // subjects' status and email, subject_keys, tenant_keys
}

// Epochs reads the current epochs: one row by its key.
func (db *DB) Epochs(ctx context.Context) (Epochs, error) {
	var e Epochs
	if err := db.Read().QueryRow(ctx, "SELECT access, subjects FROM cache_epochs WHERE id = 1").Scan(&e.Access, &e.Subjects); err != nil {
		return Epochs{}, fmt.Errorf("read cache epochs: %w", err)
	}
	return e, nil
}

type epochsKey struct{}

// WithEpochs reads the epochs and puts them in ctx: what the request that
// carries ctx reads from a cache is at least as new as the database was
// then — as new as it would read without the cache. Stale caches are
// emptied on the way. Should the read fail, ctx goes on without epochs and
// the caches are passed by.
func (db *DB) WithEpochs(ctx context.Context) context.Context {
	e, err := db.Epochs(ctx)
	if err != nil {
		return ctx
	}
	db.observe(e)
	return context.WithValue(ctx, epochsKey{}, e)
}

// Sweep empties the caches the epochs have moved past: a node keeps no
// copy of what another node changed for longer than between two sweeps,
// even when no request comes (core runs it every second).
func (db *DB) Sweep(ctx context.Context) error {
	e, err := db.Epochs(ctx)
	if err != nil {
		return err
	}
	db.observe(e)
	return nil
}

func (db *DB) observe(e Epochs) {
	db.cacheMu.Lock()
	caches := db.caches
	db.cacheMu.Unlock()
	for _, c := range caches {
		c.observe(e)
	}
}

type observer interface{ observe(Epochs) }

// A Cache keeps up to a bound of values loaded from the database, each valid
// for the epoch (one of Epochs, chosen by follow) it was loaded under. It
// answers only inside a request whose context carries epochs (WithEpochs),
// and only with values loaded under the same epoch: a newer epoch empties
// it first. Outside such a request it answers nothing, so a transaction
// never reads a copy of what it may itself have just changed.
type Cache[K comparable, V any] struct {
	follow func(Epochs) int64
	max    int

	mu    sync.Mutex
	epoch int64
	m     map[K]V
}

// NewCache returns a cache of at most max values following an epoch of db.
// When full, a value chosen at random makes room.
func NewCache[K comparable, V any](db *DB, max int, follow func(Epochs) int64) *Cache[K, V] {
	c := &Cache[K, V]{follow: follow, max: max, m: make(map[K]V)}
	db.cacheMu.Lock()
	db.caches = append(db.caches, c)
	db.cacheMu.Unlock()
	return c
}

// FollowAccess makes a Cache follow the access epoch.
func FollowAccess(e Epochs) int64 { return e.Access }

// FollowSubjects makes a Cache follow the subjects epoch.
func FollowSubjects(e Epochs) int64 { return e.Subjects }

func (c *Cache[K, V]) observe(e Epochs) {
	c.mu.Lock()
	c.advance(c.follow(e))
	c.mu.Unlock()
}

// advance moves the cache to epoch, emptying it when that is newer.
// c.mu is held.
func (c *Cache[K, V]) advance(epoch int64) {
	if epoch > c.epoch {
		clear(c.m)
		c.epoch = epoch
	}
}

func (c *Cache[K, V]) epochOf(ctx context.Context) (int64, bool) {
	e, ok := ctx.Value(epochsKey{}).(Epochs)
	if !ok {
		return 0, false
	}
	return c.follow(e), true
}

// Usable tells whether ctx carries epochs: whether Get may answer and Put
// keeps anything.
func (c *Cache[K, V]) Usable(ctx context.Context) bool {
	_, ok := c.epochOf(ctx)
	return ok
}

// Get returns the value kept for k, if it was loaded under ctx's epoch.
func (c *Cache[K, V]) Get(ctx context.Context, k K) (V, bool) {
	var zero V
	epoch, ok := c.epochOf(ctx)
	if !ok {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(epoch)
	if epoch != c.epoch {
		return zero, false
	}
	v, ok := c.m[k]
	return v, ok
}

// Put keeps v for k, loaded under ctx's epoch (read before v was): a value
// loaded under an epoch already past is not kept.
func (c *Cache[K, V]) Put(ctx context.Context, k K, v V) {
	epoch, ok := c.epochOf(ctx)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(epoch)
	if epoch != c.epoch {
		return
	}
	if _, there := c.m[k]; !there && len(c.m) >= c.max {
		for old := range c.m { // map order is random: a random victim
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

// Delete forgets k (the node that changes a row need not wait for the epoch).
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// Len is the number of values kept.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
