package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Log appends events. Create it with New and stop it with Close.
type Log struct {
	db              *sqldb.DB
	keys            *keyring.Keyring
	anchor          *anchor.Anchor
	sync            bool
	committed       func(ctx context.Context, events []Committed) error
	heads           sync.Map // tenant ids whose head row exists: lockHeads need not make it
	logger          *slog.Logger
	now             func() time.Time
	checkpointEvery int64
	maxBatch        int

	queue   chan *unit
	stopped chan struct{}
	closing chan struct{}

	mu     sync.RWMutex // held for reading while a unit is being queued
	closed bool
}

// Options tune a Log; zero values take defaults.
type Options struct {
	CheckpointEvery int64 // sign a checkpoint when the chain crosses a multiple of this (default 1000)
	MaxBatch        int   // most units in one transaction (default 256)
	// Anchor receives every signed head (required outside tests of this
	// package's internals: without it Verify fails).
	Anchor *anchor.Anchor
	// AnchorSync writes the anchor after every batch, before its units are
	// acknowledged; otherwise it is written at least once a second.
	AnchorSync bool
	Logger     *slog.Logger
	// Committed, when set, is told of every event once its batch has
	// committed, before its units are acknowledged (the ledger follows
	// the changes that take something away). Its failure is logged: the
	// events are durable in the database either way.
	Committed func(ctx context.Context, events []Committed) error
}

// Committed is an event as it was committed.
type Committed struct {
	TenantID, ID, Action, TargetType, TargetID, SubjectID, Outcome string
	At                                                             int64  // unix µs
	Details                                                        string // JSON
}

type unit struct {
	tenantID string
	// ctx is what fn runs with: the request's values (actor, request id)
	// without its cancellation or deadline. The transaction is the whole
	// batch's, so one member giving up must not break the connection under
	// the others.
	ctx     context.Context
	fn      func(ctx context.Context, tx *sqldb.Tx) error
	records []record
	done    chan error
}

// ErrClosed is returned by Commit after Close.
var ErrClosed = errs.E(errs.Unavailable, "the server is shutting down")

// New starts the log's committer.
func New(db *sqldb.DB, keys *keyring.Keyring, now func() time.Time, opt Options) *Log {
	if opt.CheckpointEvery <= 0 {
		opt.CheckpointEvery = 1000
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 256
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		db: db, keys: keys, anchor: opt.Anchor, sync: opt.AnchorSync, logger: opt.Logger, committed: opt.Committed,
		now: now, checkpointEvery: opt.CheckpointEvery, maxBatch: opt.MaxBatch,
		queue: make(chan *unit, 4096), stopped: make(chan struct{}), closing: make(chan struct{}),
	}
	go l.run()
	return l
}

// Close finishes the work already queued and stops the committer.
func (l *Log) Close() {
	l.mu.Lock() // waits for units being queued; none can be queued after
	if !l.closed {
		l.closed = true
		close(l.closing)
	}
	l.mu.Unlock()
	<-l.stopped
}

// Commit runs fn (which may be nil) and appends events for tenantID in one
// transaction, returning once both are durable. The actor and request id
// come from ctx. When fn fails nothing of it and none of the events are
// written, and its error is returned.
//
// fn runs in a transaction shared with other callers' units, so it must use
// the context it is given, never the caller's: that one carries ctx's values
// but not its cancellation. A caller that gives up before its unit is
// queued loses its write; once queued, the unit commits or fails on its own
// merits and never because of another caller. The events' Details maps are encoded
// after fn has run, so fn may complete them with what it found (a sequence
// number, a hash).
func (l *Log) Commit(ctx context.Context, tenantID string, fn func(ctx context.Context, tx *sqldb.Tx) error, events ...Event) error {
	actor := ActorFrom(ctx)
	reqID := requestIDFrom(ctx)
	now := l.now()
	u := &unit{tenantID: tenantID, ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan error, 1)}
	for _, e := range events {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		r, err := newRecord(tenantID, id.String(), now, actor, reqID, e)
		if err != nil {
			return fmt.Errorf("audit event %s: %w", e.Action, err)
		}
		u.records = append(u.records, r)
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	case l.queue <- u:
	}
	l.mu.RUnlock()
	// Once queued, the unit may commit: wait for the verdict whatever ctx says.
	return <-u.done
}

// Record appends events alone (for reads and failures).
func (l *Log) Record(ctx context.Context, tenantID string, events ...Event) error {
	return l.Commit(ctx, tenantID, nil, events...)
}

func (l *Log) run() {
	defer close(l.stopped)
	for {
		var first *unit
		select {
		case first = <-l.queue:
		case <-l.closing:
			for { // drain what was queued before Close
				select {
				case u := <-l.queue:
					l.commit([]*unit{u})
				default:
					return
				}
			}
		}
		batch := []*unit{first}
	fill:
		for len(batch) < l.maxBatch {
			select {
			case u := <-l.queue:
				batch = append(batch, u)
			default:
				break fill
			}
		}
		l.commit(batch)
	}
}

type head struct {
	seq  int64
	hash []byte
}

// commit runs one batch in one transaction. A unit that can fail alone
// (its fn) runs in its own savepoint (a Step), so that it does not sink
// the others; a unit of events alone has nothing of its own to fail — its
// details are encoded first — and needs none. The events of all the units
// that went in are inserted together at the end. Should that insert fail
// all the same, the batch is run again with a savepoint for every unit
// and its events inserted inside it: no member ever depends on another.
func (l *Log) commit(batch []*unit) {
	for _, u := range batch {
		if u.fn != nil {
			continue
		}
		for j := range u.records {
			if err := u.records[j].encodeDetails(); err != nil {
				u.fn = func(context.Context, *sqldb.Tx) error { return err } // fails alone, in its savepoint
				break
			}
		}
	}
	if errors.Is(l.commitBatch(batch, false), errUnsaved) {
		l.commitBatch(batch, true)
	}
}

// errUnsaved ends a batch whose unit without a savepoint failed: it is
// run again with one for every unit.
var errUnsaved = errors.New("an event without a savepoint failed")

// commitBatch is commit's one try: every unit in a savepoint when saved,
// only those with an fn otherwise. It answers errUnsaved, and tells no
// unit, when a unit without a savepoint failed.
func (l *Log) commitBatch(batch []*unit, saved bool) error {
	ctx := context.Background()
	results := make([]error, len(batch))
	var signed []tenantHead
	err := l.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		for i := range results {
			results[i] = nil
		}
		heads, err := l.lockHeads(ctx, tx, batch)
		if err != nil {
			return err
		}
		start := map[string]int64{}
		for t, h := range heads {
			start[t] = h.seq
		}
		// The events of every unit that went in wait in pending and go in
		// together at the end, a few statements for the lot; should that
		// fail, the batch runs again with each unit's events inside its
		// own savepoint. (No unit reads the trail inside the transaction.)
		var pending []*record
		for i, u := range batch {
			next := heads[u.tenantID]
			chain := func() error { // u's events, after next
				for j := range u.records {
					r := &u.records[j]
					if err := r.encodeDetails(); err != nil {
						return err
					}
					r.Seq = next.seq + 1
					r.PrevHash = next.hash
					r.Hash = r.hash()
					next = head{seq: r.Seq, hash: r.Hash}
				}
				return nil
			}
			if saved || u.fn != nil {
				results[i] = tx.Step(ctx, func() error {
					if u.fn != nil {
						if err := u.fn(u.ctx, tx); err != nil {
							return err
						}
					}
					if err := chain(); err != nil {
						return err
					}
					if saved {
						return insertRecords(ctx, tx, recordsOf(u))
					}
					return nil
				})
			} else if err := chain(); err != nil {
				return errUnsaved
			}
			if results[i] == nil {
				heads[u.tenantID] = next
				if !saved {
					pending = append(pending, recordsOf(u)...)
				}
			}
		}
		if err := insertRecords(ctx, tx, pending); err != nil {
			return errUnsaved
		}
		now := l.now().UnixMicro()
		signed = signed[:0]
		for t, h := range heads {
			if h.seq == start[t] {
				continue
			}
			sh, err := l.sign(ctx, tx, t, h, now)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE audit_heads SET seq = ?, hash = ?, updated_at = ?, signed_at = ?, signature = ? WHERE tenant_id = ?",
				h.seq, h.hash, now, sh.At, sh.Signature, t); err != nil {
				return fmt.Errorf("advance audit head: %w", err)
			}
			if sh.Signature != nil {
				signed = append(signed, tenantHead{t, sh})
			}
			if h.seq/l.checkpointEvery > start[t]/l.checkpointEvery {
				if err := l.checkpoint(ctx, tx, t, h, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if errors.Is(err, errUnsaved) {
		return err
	}
	if err == nil {
		l.noteHeads(ctx, signed)
		l.tell(ctx, batch, results)
	}
	for i, u := range batch {
		switch {
		case err != nil && results[i] == nil:
			u.done <- fmt.Errorf("audit commit: %w", err)
		default:
			u.done <- results[i]
		}
	}
	return nil
}

// tell hands the events of the batch's committed units to Committed.
func (l *Log) tell(ctx context.Context, batch []*unit, results []error) {
	if l.committed == nil {
		return
	}
	var out []Committed
	for i, u := range batch {
		if results[i] != nil {
			continue
		}
		for _, r := range u.records {
			out = append(out, Committed{TenantID: r.TenantID, ID: r.ID, Action: r.Action, TargetType: r.TargetType,
				TargetID: r.TargetID, SubjectID: r.SubjectID, Outcome: r.Outcome, At: r.At, Details: r.Details})
		}
	}
	if len(out) == 0 {
		return
	}
	if err := l.committed(ctx, out); err != nil {
		l.logger.Error("committed audit events were not all passed on", "err", err.Error(), "events", len(out))
	}
}

// lockHeads loads (creating when missing) and locks the chain head of every
// tenant in the batch, in tenant order so that nodes never deadlock.
func (l *Log) lockHeads(ctx context.Context, tx *sqldb.Tx, batch []*unit) (map[string]head, error) {
	var tenants []string
	for _, u := range batch {
		tenants = append(tenants, u.tenantID)
	}
	slices.Sort(tenants)
	tenants = slices.Compact(tenants)
	heads := make(map[string]head, len(tenants))
	for _, t := range tenants {
		var h head
		lock := func() error {
			return tx.QueryRow(ctx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?"+l.db.ForUpdate(), t).Scan(&h.seq, &h.hash)
		}
		// A head seen once is there (heads are never deleted): a statement
		// less per batch. Gone all the same, it is made again.
		_, seen := l.heads.Load(t)
		err := errNotSeen
		if seen {
			err = lock()
		}
		if errors.Is(err, errNotSeen) || errors.Is(err, sql.ErrNoRows) {
			if _, err := tx.Exec(ctx, `INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES (?, 0, ?, ?)
				ON CONFLICT (tenant_id) DO NOTHING`, t, genesis(t), l.now().UnixMicro()); err != nil {
				return nil, fmt.Errorf("create audit head: %w", err)
			}
			err = lock()
		}
		if err != nil {
			return nil, fmt.Errorf("lock audit head: %w", err)
		}
		l.heads.Store(t, true)
		heads[t] = h
	}
	return heads, nil
}

// errNotSeen: the head of a tenant this log has not met yet.
var errNotSeen = errors.New("audit head not seen yet")

func recordsOf(u *unit) []*record {
	out := make([]*record, len(u.records))
	for i := range u.records {
		out[i] = &u.records[i]
	}
	return out
}

// insertRecords inserts rs and the people they name (for the index of
// events by person), many rows a statement.
func insertRecords(ctx context.Context, tx *sqldb.Tx, rs []*record) error {
	events := make([][]any, 0, len(rs))
	var named [][]any
	for _, r := range rs {
		events = append(events, []any{r.TenantID, r.Seq, r.ID, r.At, r.ActorType, r.ActorID, r.ActorSubjectID, r.ActorCT, r.Action,
			r.TargetType, r.TargetID, r.SubjectID, r.Outcome, r.RequestID, r.Details, r.PrevHash, r.Hash})
		for _, id := range r.subjects {
			named = append(named, []any{r.TenantID, r.Seq, id})
		}
	}
	if err := tx.InsertRows(ctx, "audit_events", eventColumns, events); err != nil {
		return fmt.Errorf("append audit events: %w", err)
	}
	if err := tx.InsertRows(ctx, "audit_event_subjects", []string{"tenant_id", "seq", "subject_id"}, named); err != nil {
		return fmt.Errorf("index audit events by person: %w", err)
	}
	return nil
}

var eventColumns = []string{"tenant_id", "seq", "id", "at", "actor_type", "actor_id", "actor_subject_id",
	"actor_ct", "action", "target_type", "target_id", "subject_id", "outcome", "request_id", "details", "prev_hash", "hash"}

type tenantHead struct {
	tenantID string
	head     anchor.Head
}

// sign signs h, tenantID's new head, at `at`. A tenant whose keys do not
// exist (yet) gets an unsigned head, which Verify refuses.
func (l *Log) sign(ctx context.Context, tx *sqldb.Tx, tenantID string, h head, at int64) (anchor.Head, error) {
	key, err := l.keys.AuditSigningKey(ctx, tx.Q, tenantID)
	if errs.Is(err, errs.NotFound) {
		return anchor.Head{Seq: h.seq, Hash: h.hash}, nil
	}
	if err != nil {
		return anchor.Head{}, fmt.Errorf("sign audit head: %w", err)
	}
	return anchor.Head{Seq: h.seq, Hash: h.hash, At: at, Key: key.Public().(ed25519.PublicKey),
		Signature: ed25519.Sign(key, checkpointMessage(tenantID, h.seq, h.hash, at))}, nil
}

// noteHeads hands the heads a batch signed to the anchor; synchronously
// written, when so configured, before the batch is acknowledged. The
// batch is durable in the database either way: a failed anchor write is
// logged and retried, never reported as the units' failure.
func (l *Log) noteHeads(ctx context.Context, heads []tenantHead) {
	if l.anchor == nil || len(heads) == 0 {
		return
	}
	for _, h := range heads {
		l.anchor.Note(h.tenantID, h.head)
	}
	if l.sync {
		if err := l.anchor.Flush(ctx); err != nil {
			l.logger.Error("audit anchor not written; retrying", "err", err.Error())
		}
	}
}

func checkpointMessage(tenantID string, seq int64, hash []byte, at int64) []byte {
	return []byte("custodia/v1 audit checkpoint\x00" + tenantID + "\x00" + strconv.FormatInt(seq, 10) +
		"\x00" + fmt.Sprintf("%x", hash) + "\x00" + strconv.FormatInt(at, 10))
}

func (l *Log) checkpoint(ctx context.Context, tx *sqldb.Tx, tenantID string, h head, at int64) error {
	key, err := l.keys.AuditSigningKey(ctx, tx.Q, tenantID)
	if errs.Is(err, errs.NotFound) {
		return nil // events of a tenant whose keys are being created in this batch
	}
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	sig := ed25519.Sign(key, checkpointMessage(tenantID, h.seq, h.hash, at))
	_, err = tx.Exec(ctx, `INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, seq) DO NOTHING`, tenantID, h.seq, h.hash, at, sig)
	return err
}

// Checkpoint signs the current head of a tenant's chain now, e.g. at
// shutdown or before a backup.
func (l *Log) Checkpoint(ctx context.Context, tenantID string) error {
	return l.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		var h head
		err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?"+l.db.ForUpdate(), tenantID).Scan(&h.seq, &h.hash)
		if err != nil {
			return errors.Join(errs.E(errs.NotFound, "no audit chain for this tenant"), err)
		}
		return l.checkpoint(ctx, tx, tenantID, h, l.now().UnixMicro())
	})
}
