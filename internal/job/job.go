// Package job runs Custodia's background work, one mechanism for every
// shape of it:
//
//   - Periodic jobs (retention, the digest, purges, sweeps, migration
//     resume…) run once per period across all nodes. Their schedule is a
//     row of the jobs table: the node that claims the row when it is due
//     holds a lease it renews while the job runs; a node that dies lets
//     the lease run out and another takes the job over. A failure is
//     retried with exponential backoff (never later than the next period).
//   - Per-node jobs (the mail outbox, whose messages carry their own
//     leases; the audit anchor's flush) run on every node, every period
//     and whenever they are woken.
//
// Stop cancels the jobs and waits for them, so the database is never
// closed under one. Every run is measured: runs by outcome, duration, and
// the time of the last success, in /metrics.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/sqldb"
)

// Kind is how a job is scheduled.
type Kind int

const (
	// Periodic jobs run once per Every across all nodes.
	Periodic Kind = iota
	// PerNode jobs run on every node, every Every and when woken.
	PerNode
)

// Job is one piece of background work.
type Job struct {
	Name  string
	Kind  Kind
	Every time.Duration
	Run   func(ctx context.Context) error
	// Lease is how long a node holds a periodic job without renewing it
	// (default 5 minutes; renewed every third of it while the job runs).
	Lease time.Duration
	// Wake, for a per-node job, runs it now when it receives (the outbox
	// is woken when a message is queued).
	Wake <-chan struct{}
}

// Options tune a Runner; zero values take defaults.
type Options struct {
	Node     string           // this node's name, in the owner of a lease
	Now      func() time.Time // the clock schedules are read against
	Logger   *slog.Logger
	Registry prometheus.Registerer // where the jobs' metrics go (none when nil)
	Tick     time.Duration         // how often due periodic jobs are looked for (default 1 s)
}

// Runner runs jobs until Stop.
type Runner struct {
	db     *sqldb.DB
	owner  string
	now    func() time.Time
	logger *slog.Logger
	tick   time.Duration
	jobs   []*entry

	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	success  *prometheus.GaugeVec

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type entry struct {
	Job
	wake    chan struct{} // per-node: run now
	mu      sync.Mutex
	next    time.Time // periodic: not worth asking the database before
	running bool
}

// ErrBusy is what RunDue answers for a periodic job another node holds.
var ErrBusy = errors.New("job: held by another node")

// New returns a Runner on db.
func New(db *sqldb.DB, opt Options) *Runner {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Tick <= 0 {
		opt.Tick = time.Second
	}
	r := &Runner{
		db: db, owner: opt.Node + "/" + uuid.NewString()[:8], now: opt.Now, logger: opt.Logger, tick: opt.Tick,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custodia_job_runs_total", Help: "Background job runs by job and outcome (ok, failed).",
		}, []string{"job", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "custodia_job_duration_seconds", Help: "How long background job runs take.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"job"}),
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "custodia_job_last_success_timestamp_seconds", Help: "When each background job last succeeded on this node (Unix time).",
		}, []string{"job"}),
	}
	if opt.Registry != nil {
		opt.Registry.MustRegister(r.runs, r.duration, r.success)
	}
	return r
}

// Owner is how this runner names itself in the leases it takes.
func (r *Runner) Owner() string { return r.owner }

// Add registers j; jobs are added before Start.
func (r *Runner) Add(j Job) {
	if j.Every <= 0 || j.Run == nil || j.Name == "" {
		panic(fmt.Sprintf("job %q: a name, a period and a function are required", j.Name))
	}
	if j.Lease <= 0 {
		j.Lease = 5 * time.Minute
	}
	r.jobs = append(r.jobs, &entry{Job: j, wake: make(chan struct{}, 1)})
}

// Start runs the jobs in the background until Stop.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("job: runner started twice")
	}
	if err := r.Register(ctx); err != nil {
		return err
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.started = true
	for _, e := range r.jobs {
		if e.Kind == PerNode {
			r.wg.Go(func() { r.perNode(ctx, e) })
		}
	}
	r.wg.Go(func() { r.schedule(ctx) })
	return nil
}

// Stop cancels the running jobs and waits for every one to return.
func (r *Runner) Stop() {
	r.mu.Lock()
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
}

// Wake runs the per-node job name now (once more if it is running).
func (r *Runner) Wake(name string) {
	for _, e := range r.jobs {
		if e.Name == name {
			select {
			case e.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Register makes the schedule row of every periodic job (due at once when
// new). Start does it; a test or tool that drives the runner with RunDue
// calls it instead.
func (r *Runner) Register(ctx context.Context) error {
	return r.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		for _, e := range r.jobs {
			if e.Kind != Periodic {
				continue
			}
			if _, err := tx.Exec(ctx, "INSERT INTO jobs (name) VALUES (?) ON CONFLICT (name) DO NOTHING", e.Name); err != nil {
				return fmt.Errorf("register job %s: %w", e.Name, err)
			}
		}
		return nil
	})
}

func (r *Runner) perNode(ctx context.Context, e *entry) {
	t := time.NewTicker(e.Every)
	defer t.Stop()
	failures := 0
	for {
		err := r.run(ctx, e)
		wait := t.C
		var retry <-chan time.Time
		if err != nil && ctx.Err() == nil {
			failures++
			retry = time.After(backoff(failures, e.Every))
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-e.Wake:
		case <-wait:
		case <-retry:
		}
	}
}

// schedule looks for due periodic jobs every tick and runs the ones this
// node claims, each in its own goroutine.
func (r *Runner) schedule(ctx context.Context) {
	t := time.NewTicker(r.tick)
	defer t.Stop()
	for {
		for _, e := range r.jobs {
			if e.Kind != Periodic || !e.due(r.now()) {
				continue
			}
			r.wg.Go(func() {
				if err := r.runPeriodic(ctx, e); err != nil && !errors.Is(err, ErrBusy) && ctx.Err() == nil {
					r.logger.Error("job", "job", e.Name, "err", err.Error())
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// due reports whether e is worth claiming now, and marks it running if so.
func (e *entry) due(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running || now.Before(e.next) {
		return false
	}
	e.running = true
	return true
}

func (e *entry) done(next time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running, e.next = false, next
}

// RunDue runs every periodic job that is due and that this node can
// claim, and waits for them: one scheduling pass, for tests and tools.
// It answers the jobs it ran.
func (r *Runner) RunDue(ctx context.Context) ([]string, error) {
	var ran []string
	var errs []error
	for _, e := range r.jobs {
		if e.Kind != Periodic || !e.due(r.now()) {
			continue
		}
		switch err := r.runPeriodic(ctx, e); {
		case errors.Is(err, ErrBusy):
		case err != nil:
			ran = append(ran, e.Name)
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
		default:
			ran = append(ran, e.Name)
		}
	}
	return ran, errors.Join(errs...)
}

// runPeriodic claims e's row when it is due and free, runs it while
// renewing the lease, and schedules the next run: the next period after a
// success, a backoff after a failure.
func (r *Runner) runPeriodic(ctx context.Context, e *entry) (err error) {
	now := r.now()
	next := now.Add(r.tick)
	defer func() { e.done(next) }()
	claimed, free, err := r.claim(ctx, e, now)
	if err != nil {
		return err
	}
	if !claimed {
		next = free
		return ErrBusy
	}
	renewed := make(chan struct{})
	rctx, stopRenewing := context.WithCancel(ctx)
	go func() { defer close(renewed); r.renew(rctx, e) }()
	runErr := r.run(ctx, e)
	stopRenewing()
	<-renewed
	next, err = r.finish(context.WithoutCancel(ctx), e, now, runErr)
	return errors.Join(runErr, err)
}

// claim takes e's lease if the job is due and nobody holds it; otherwise
// it answers when to look again.
func (r *Runner) claim(ctx context.Context, e *entry, now time.Time) (bool, time.Time, error) {
	var claimed bool
	var nextRun, leaseUntil int64
	err := r.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE jobs SET owner = ?, lease_until = ?, started_at = ? WHERE name = ? AND next_run_at <= ? AND lease_until <= ?",
			r.owner, now.Add(e.Lease).UnixMicro(), now.UnixMicro(), e.Name, now.UnixMicro(), now.UnixMicro())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			claimed = true
			return nil
		}
		return tx.QueryRow(ctx, "SELECT next_run_at, lease_until FROM jobs WHERE name = ?", e.Name).Scan(&nextRun, &leaseUntil)
	})
	if err != nil {
		return false, now.Add(r.tick), fmt.Errorf("claim job %s: %w", e.Name, err)
	}
	return claimed, time.UnixMicro(max(nextRun, leaseUntil)), nil
}

// renew extends the lease every third of it until ctx ends.
func (r *Runner) renew(ctx context.Context, e *entry) {
	t := time.NewTicker(e.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE jobs SET lease_until = ? WHERE name = ? AND owner = ?", r.now().Add(e.Lease).UnixMicro(), e.Name, r.owner)
			return err
		})
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("job lease not renewed", "job", e.Name, "err", err.Error())
		}
	}
}

// finish releases e's lease and sets its next run.
func (r *Runner) finish(ctx context.Context, e *entry, started time.Time, runErr error) (time.Time, error) {
	end := r.now()
	var next time.Time
	err := r.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		if runErr == nil {
			next = nextPeriod(end, e.Every)
			_, err := tx.Exec(ctx, `UPDATE jobs SET owner = '', lease_until = 0, next_run_at = ?, last_success_at = ?, last_duration_us = ?, failures = 0
				WHERE name = ? AND owner = ?`, next.UnixMicro(), end.UnixMicro(), end.Sub(started).Microseconds(), e.Name, r.owner)
			return err
		}
		var failures int
		if err := tx.QueryRow(ctx, "SELECT failures FROM jobs WHERE name = ?", e.Name).Scan(&failures); err != nil {
			return err
		}
		next = end.Add(backoff(failures+1, e.Every))
		_, err := tx.Exec(ctx, "UPDATE jobs SET owner = '', lease_until = 0, next_run_at = ?, failures = failures + 1 WHERE name = ? AND owner = ?",
			next.UnixMicro(), e.Name, r.owner)
		return err
	})
	if err != nil {
		return end.Add(r.tick), fmt.Errorf("finish job %s: %w", e.Name, err)
	}
	return next, nil
}

// run runs e once, measured and logged.
func (r *Runner) run(ctx context.Context, e *entry) error {
	start := time.Now()
	err := e.Run(ctx)
	r.duration.WithLabelValues(e.Name).Observe(time.Since(start).Seconds())
	switch {
	case err != nil && ctx.Err() != nil: // stopped: not a failure
		return err
	case err != nil:
		r.runs.WithLabelValues(e.Name, "failed").Inc()
		r.logger.Error("job failed", "job", e.Name, "err", err.Error())
	default:
		r.runs.WithLabelValues(e.Name, "ok").Inc()
		r.success.WithLabelValues(e.Name).SetToCurrentTime()
	}
	return err
}

// nextPeriod is the start of the period after the one t is in: periods
// are aligned to absolute time (whole hours, whole days in UTC), so every
// node agrees on them.
func nextPeriod(t time.Time, every time.Duration) time.Time {
	return t.Truncate(every).Add(every)
}

// backoff is how long to wait after the nth failure in a row: 10 s
// doubling, never more than the job's period.
func backoff(n int, every time.Duration) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < every; i++ {
		d *= 2
	}
	return min(d, every)
}

// Failing answers the names of the periodic jobs whose last run failed
// (they are retried with a backoff; the log says why).
func Failing(ctx context.Context, db *sqldb.DB) ([]string, error) {
	return db.Read().Strings(ctx, "SELECT name FROM jobs WHERE failures > 0 ORDER BY name")
}
