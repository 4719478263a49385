package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/subject"
)

// BenchmarkBackups measures, on SQLite as in production with 100 000
// contacts (BENCH_SUBJECTS changes it): a backup (time and size), a
// restore of it into a fresh data dir, an erasure with 5 backups kept
// (each rewrites the person's shard in all five), and subject creation
// while a backup runs (it must keep answering: the latencies of creates
// from 4 clients during the backup).
func BenchmarkBackups(b *testing.B) {
	n := envInt("BENCH_SUBJECTS", 100000)
	env := coretest.NewWith(b, "", coretest.AsInProduction)
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	rows := make([]subject.ImportRow, n)
	for i := range rows {
		rows[i] = subject.ImportRow{Line: i + 2, New: subject.New{Email: fmt.Sprintf("person%07d@example.org", i), Source: "bench",
			Attributes: map[string]any{"city": "Ghent", "name": "Person " + strconv.Itoa(i)}}}
	}
	if _, err := env.Core.Subjects.Import(ctx, env.Tenant.ID, rows, nil, subject.ExistingFail, false, nil); err != nil {
		b.Fatal(err)
	}
	setup := env.Core.Backups.Setup()
	var last backup.Manifest
	b.Run(fmt.Sprintf("backup-of-%d", n), func(b *testing.B) {
		for b.Loop() {
			m, err := env.Core.Backups.Run(ctx)
			if err != nil {
				b.Fatal(err)
			}
			env.Now.Advance(time.Hour)
			last = m
		}
		size := last.Database.Bytes
		for _, k := range last.Keys {
			size += k.Bytes
		}
		b.ReportMetric(float64(size)/1e6, "MB")
	})
	b.Run(fmt.Sprintf("restore-of-%d", n), func(b *testing.B) {
		raw, err := os.ReadFile(setup.Identity)
		if err != nil {
			b.Fatal(err)
		}
		ids, err := age.ParseIdentities(strings.NewReader(string(raw)))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			dst := filepath.Join(b.TempDir(), "custodia.db")
			if _, err := backup.RestoreSQLite(ctx, setup.Dir, last.ID, setup.Fingerprint, ids, dst, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for { // five kept
		ms, err := backup.List(setup.Dir, setup.Trusted...)
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) >= 5 {
			break
		}
		if _, err := env.Core.Backups.Run(ctx); err != nil {
			b.Fatal(err)
		}
		env.Now.Advance(time.Hour)
	}
	people, err := env.Core.Subjects.IDs(ctx, env.Tenant.ID, subject.Where{}, "", n)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("erasure-with-5-backups", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, people[i], subject.EraseInput{Reason: "bench"}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("erasure-shard-rewrite-in-5-backups", func(b *testing.B) {
		i := len(people) - 1
		for b.Loop() {
			if held, err := backup.Forget(setup.Dir, env.Tenant.ID, people[i], setup.Signer, setup.Trusted...); err != nil || held != 5 {
				b.Fatalf("forget: %d %v", held, err)
			}
			i--
		}
	})
	for _, during := range []bool{false, true} {
		name := "create-without-backup"
		if during {
			name = "create-during-backup"
		}
		b.Run(name, func(b *testing.B) { createLatency(b, env, during) })
	}
}

// createLatency has 4 clients create people while a backup runs (or for
// two seconds) and reports the latencies.
func createLatency(b *testing.B, env *coretest.Env, during bool) {
	ctx := audit.WithActor(context.Background(), audit.Actor{Type: audit.ActorOperator, ID: "bench"})
	var p50, p99, worst time.Duration
	creates, round := 0, 0
	for b.Loop() {
		round++
		stop := make(chan struct{})
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					if _, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: fmt.Sprintf("during-%t-%d-%d-%d@example.org", during, round, c, i)}); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
				}
			})
		}
		if during {
			if _, err := env.Core.Backups.Run(ctx); err != nil {
				b.Fatal(err)
			}
			env.Now.Advance(time.Hour)
		} else {
			time.Sleep(2 * time.Second)
		}
		close(stop)
		wg.Wait()
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no subject was created during the backup")
		}
		p50, p99, worst = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
		creates += len(lat)
	}
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(creates)/float64(b.N), "creates/round")
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
