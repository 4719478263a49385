package job_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/job"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// clock is a settable clock shared by the nodes of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)} }

func node(t *testing.T, db *sqldb.DB, name string, c *clock, jobs ...job.Job) *job.Runner {
	t.Helper()
	r := job.New(db, job.Options{Node: name, Now: c.Now})
	for _, j := range jobs {
		r.Add(j)
	}
	// The background loops are not started: the test drives each node
	// with RunDue.
	if err := r.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// Two nodes on one database: each period the job runs once, on one of
// them, even when both look at the same moment.
func TestPeriodicRunsOncePerPeriodAcrossNodes(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		var runs atomic.Int32
		j := job.Job{Name: "digest", Kind: job.Periodic, Every: time.Hour, Run: func(context.Context) error { runs.Add(1); return nil }}
		a, b := node(t, db, "a", c, j), node(t, db, "b", c, j)
		for period := 1; period <= 4; period++ {
			var wg sync.WaitGroup
			for _, n := range []*job.Runner{a, b, a, b} {
				wg.Go(func() {
					if _, err := n.RunDue(context.Background()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			c.Advance(20 * time.Minute) // later in the same period: nothing more
			a.RunDue(context.Background())
			b.RunDue(context.Background())
			if got := runs.Load(); got != int32(period) {
				t.Fatalf("after period %d: %d runs", period, got)
			}
			c.Advance(40 * time.Minute)
		}
	})
}

// A node that dies while it runs a job lets its lease run out; another
// node then takes the job over, and the dead node's late finish does not
// undo the new owner's schedule.
func TestAnotherNodeTakesOverADeadOnesJob(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		hung, release := make(chan struct{}), make(chan struct{})
		var onB atomic.Int32
		mk := func(run func(context.Context) error) job.Job {
			return job.Job{Name: "sweep", Kind: job.Periodic, Every: time.Hour, Lease: 10 * time.Minute, Run: run}
		}
		a := node(t, db, "a", c, mk(func(context.Context) error { close(hung); <-release; return nil }))
		b := node(t, db, "b", c, mk(func(context.Context) error { onB.Add(1); return nil }))
		done := make(chan struct{})
		go func() { defer close(done); a.RunDue(context.Background()) }()
		<-hung // a holds the job, and hangs: as good as dead
		c.Advance(5 * time.Minute)
		if ran, _ := b.RunDue(context.Background()); len(ran) != 0 || onB.Load() != 0 {
			t.Fatalf("b ran %v while a's lease was live", ran)
		}
		c.Advance(6 * time.Minute) // the lease has run out
		if ran, err := b.RunDue(context.Background()); err != nil || len(ran) != 1 || onB.Load() != 1 {
			t.Fatalf("b did not take the job over: %v %v", ran, err)
		}
		close(release)
		<-done
		owner, next := schedule(t, db, "sweep")
		if owner != "" || !next.Equal(time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)) {
			t.Errorf("after a's late finish: owner %q, next run %v; want none and 11:00", owner, next)
		}
	})
}

// A failed run is retried after a backoff, not only next period; a
// success resets the count.
func TestFailureIsRetriedWithBackoff(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		c := newClock()
		var calls atomic.Int32
		reg := prometheus.NewRegistry()
		r := job.New(db, job.Options{Node: "a", Now: c.Now, Registry: reg})
		r.Add(job.Job{Name: "purge", Kind: job.Periodic, Every: time.Hour, Run: func(context.Context) error {
			if calls.Add(1) <= 2 {
				return errors.New("region down")
			}
			return nil
		}})
		ctx := context.Background()
		if err := r.Register(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.RunDue(ctx); err == nil {
			t.Fatal("a failing run reported no error")
		}
		for _, step := range []struct {
			wait time.Duration
			want int32
		}{{5 * time.Second, 1}, {6 * time.Second, 2}, {15 * time.Second, 2}, {6 * time.Second, 3}, {time.Minute, 3}} {
			c.Advance(step.wait)
			r.RunDue(ctx)
			if got := calls.Load(); got != step.want {
				t.Fatalf("after %v more: %d calls, want %d (10 s, then 20 s of backoff)", step.wait, got, step.want)
			}
		}
		if _, next := schedule(t, db, "purge"); !next.Equal(time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)) {
			t.Errorf("after the success the next run is %v; want the next period", next)
		}
		runs := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "custodia_job_runs_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" {
						runs[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
		if runs["failed"] != 2 || runs["ok"] != 1 {
			t.Errorf("custodia_job_runs_total by outcome: %v; want 2 failed, 1 ok", runs)
		}
	})
}

// Per-node jobs run at start, when woken, and Stop waits for them.
func TestPerNodeJobsAndStop(t *testing.T) {
	db := sqldbtest.SQLite(t)
	var runs atomic.Int32
	started := make(chan struct{}, 10)
	stopped := atomic.Bool{}
	r := job.New(db, job.Options{Node: "a"})
	r.Add(job.Job{Name: "outbox", Kind: job.PerNode, Every: time.Hour, Run: func(ctx context.Context) error {
		runs.Add(1)
		started <- struct{}{}
		if runs.Load() == 2 {
			<-ctx.Done() // still running when Stop is called
			time.Sleep(50 * time.Millisecond)
			stopped.Store(true)
		}
		return nil
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started // at start
	r.Wake("outbox")
	<-started // woken
	r.Stop()
	if !stopped.Load() {
		t.Error("Stop returned before the running job did")
	}
	if runs.Load() != 2 {
		t.Errorf("%d runs; want 2", runs.Load())
	}
}

func schedule(t *testing.T, db *sqldb.DB, name string) (string, time.Time) {
	t.Helper()
	var owner string
	var next int64
	if err := db.Read().QueryRow(context.Background(), "SELECT owner, next_run_at FROM jobs WHERE name = ?", name).Scan(&owner, &next); err != nil {
		t.Fatal(err)
	}
	return owner, time.UnixMicro(next).UTC()
}
