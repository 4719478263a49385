package audit_test

import (
	"context"
	"crypto/ed25519"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func benchEngines(b *testing.B, fn func(b *testing.B, env *coretest.Env)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, coretest.NewWith(b, "", coretest.AsInProduction)) })
	b.Run("postgres", func(b *testing.B) { fn(b, coretest.NewWith(b, sqldbtest.PostgresURL(b), coretest.AsInProduction)) })
}

// BenchmarkAppend measures durable audit appends: one writer, then 16
// concurrent writers with group commit (each batch signs its head; the
// anchor is written once a second), 16 writers whose units each write a
// row of their own, 16 writers with the anchor written
// at every batch (CUSTODIA_ANCHOR_SYNC), then 16 writers with batching
// off (MaxBatch 1: one transaction, one signature and one fsync per
// event) for comparison.
func BenchmarkAppend(b *testing.B) {
	benchEngines(b, func(b *testing.B, env *coretest.Env) {
		ctx := context.Background()
		ev := audit.Event{Action: "bench.append", TargetType: "bench", TargetID: "1", SubjectID: "s"}
		b.Run("1-writer", func(b *testing.B) {
			for b.Loop() {
				if err := env.Core.Log.Record(ctx, env.Tenant.ID, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		parallel := func(log *audit.Log) func(b *testing.B) {
			return func(b *testing.B) {
				b.SetParallelism(16 / max(1, runtimeProcs()))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := log.Record(ctx, env.Tenant.ID, ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
		}
		b.Run("16-writers", parallel(env.Core.Log))
		// Units with a write of their own (as a create's): each in its own
		// savepoint, sent with its statement.
		var n atomic.Int64
		b.Run("16-writers-with-a-write", func(b *testing.B) {
			b.SetParallelism(16 / max(1, runtimeProcs()))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := "bench-" + strconv.FormatInt(n.Add(1), 10)
					if err := env.Core.Log.Commit(ctx, env.Tenant.ID, func(ctx context.Context, tx *sqldb.Tx) error {
						_, err := tx.Exec(ctx, "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES (?, 0, ?, 0)", id, []byte{1})
						return err
					}, ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		synced := audit.New(env.Core.DB, env.Core.Keys, time.Now, audit.Options{Anchor: env.Core.Anchor, AnchorSync: true})
		defer synced.Close()
		b.Run("16-writers-anchor-sync", parallel(synced))
		unbatched := audit.New(env.Core.DB, env.Core.Keys, time.Now, audit.Options{MaxBatch: 1})
		defer unbatched.Close()
		b.Run("16-writers-no-batching", parallel(unbatched))
	})
}

// BenchmarkVerify measures recomputing a 10 000-event chain.
func BenchmarkVerify(b *testing.B) {
	benchEngines(b, func(b *testing.B, env *coretest.Env) {
		ctx := context.Background()
		events := make([]audit.Event, 500)
		for i := range events {
			events[i] = audit.Event{Action: "bench.fill", TargetType: "bench", TargetID: "x"}
		}
		for range 20 {
			if err := env.Core.Log.Record(ctx, env.Tenant.ID, events...); err != nil {
				b.Fatal(err)
			}
		}
		var n int64
		for b.Loop() {
			v, err := env.Core.Log.Verify(ctx, env.Tenant.ID)
			if err != nil || !v.OK {
				b.Fatalf("%+v %v", v, err)
			}
			n = v.Events
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkSignHead measures what each commit batch adds per tenant:
// one ed25519 signature over the new head.
func BenchmarkSignHead(b *testing.B) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	msg := []byte("custodia/v1 audit checkpoint\x00tenant\x00123456\x00" + strings.Repeat("ab", 32) + "\x001780000000000000")
	for b.Loop() {
		ed25519.Sign(key, msg)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkQueryBySubject reads one person's events (their access export's
// "who read my data") in a trail of 100 000 events about others: the
// index of the people events name and the events' own subject index
// answer it, not a scan of the trail.
func BenchmarkQueryBySubject(b *testing.B) {
	env := coretest.NewWith(b, "", coretest.AsInProduction)
	ctx := context.Background()
	batch := make([]audit.Event, 1000)
	for n := 0; n < 100000; n += len(batch) {
		for i := range batch {
			id := strconv.Itoa(n + i)
			batch[i] = audit.Event{Action: "subject.read", TargetType: "subject", TargetID: id, SubjectID: id}
		}
		if err := env.Core.Log.Record(ctx, env.Tenant.ID, batch...); err != nil {
			b.Fatal(err)
		}
	}
	if err := env.Core.Log.Record(ctx, env.Tenant.ID, audit.Event{Action: "subject.read", TargetType: "subject", TargetID: "ann", SubjectID: "ann"},
		audit.Event{Action: "subject.list", TargetType: "subject", Subjects: []string{"ann", "bob"}}); err != nil {
		b.Fatal(err)
	}
	rd := audit.NewReader(env.Core.DB, env.Core.Keys)
	for b.Loop() {
		es, _, err := rd.Query(ctx, env.Tenant.ID, audit.Filter{SubjectID: "ann", Limit: 1000})
		if err != nil || len(es) != 2 {
			b.Fatalf("%d events, %v", len(es), err)
		}
	}
}
