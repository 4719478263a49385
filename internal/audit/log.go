package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	known           map[string]head // the committer's own: each tenant's head as its last batch left it
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
		now: now, checkpointEvery: opt.CheckpointEvery, maxBatch: opt.MaxBatch, known: map[string]head{},
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
	if l.pipeline(batch) {
		return
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
	var heads map[string]head
	var signed []tenantHead
	err := l.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		for i := range results {
			results[i] = nil
		}
		start, err := l.lockHeads(ctx, tx, batch)
		if err != nil {
			return err
		}
		heads = maps.Clone(start)
		// The events of every unit that went in wait in pending and go in
		// together at the end, a few statements for the lot; should that
		// fail, the batch runs again with each unit's events inside its
		// own savepoint. (No unit reads the trail inside the transaction.)
		var pending []*record
		for i, u := range batch {
			var next head
			if saved || u.fn != nil {
				results[i] = tx.Step(ctx, func() error {
					if u.fn != nil {
						if err := u.fn(u.ctx, tx); err != nil {
							return err
						}
					}
					var err error
					if next, err = chain(u, heads[u.tenantID]); err != nil {
						return err
					}
					if saved {
						return insertRecords(ctx, tx, recordsOf(u))
					}
					return nil
				})
			} else if next, err = chain(u, heads[u.tenantID]); err != nil {
				return errUnsaved
			}
			if results[i] == nil {
				heads[u.tenantID] = next
				if !saved {
					pending = append(pending, recordsOf(u)...)
				}
			}
		}
		events, err := recordStmts(pending)
		if err != nil {
			return errUnsaved
		}
		moves, checkpoints, s, err := l.advance(ctx, tx.Q, start, heads)
		if err != nil {
			return err
		}
		signed = s
		// Together: one round trip on PostgreSQL. Should it fail with
		// events in it, those may be what the database refuses: again,
		// each unit's in its own savepoint.
		if err := tx.Run(ctx, slices.Concat(events, moves, checkpoints)); err != nil && len(events) > 0 {
			return errUnsaved
		} else if err != nil {
			return fmt.Errorf("advance audit head: %w", err)
		}
		return nil
	})
	if errors.Is(err, errUnsaved) {
		return err
	}
	if err == nil {
		maps.Copy(l.known, heads)
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

// pipeline commits a batch of events alone (no unit with writes of its
// own) whose tenants' heads the committer knows from its last batch,
// without reading and locking them first: the statements that move each
// head name the head they follow and go first, then the events — on
// PostgreSQL all in one round trip (sqldb.Pipeline). Should someone else
// have moved a head meanwhile (another node, the command line, a restore)
// or anything fail, nothing is written and it answers false: the batch
// goes the ordinary way, which reads the heads under lock.
func (l *Log) pipeline(batch []*unit) bool {
	ctx := context.Background()
	start := map[string]head{}
	for _, u := range batch {
		h, ok := l.known[u.tenantID]
		if u.fn != nil || !ok {
			return false
		}
		start[u.tenantID] = h
	}
	heads := maps.Clone(start)
	var records []*record
	for _, u := range batch {
		next, err := chain(u, heads[u.tenantID])
		if err != nil {
			return false
		}
		heads[u.tenantID] = next
		records = append(records, recordsOf(u)...)
	}
	moves, checkpoints, signed, err := l.advance(ctx, l.db.Read(), start, heads)
	if err != nil {
		return false
	}
	events, err := recordStmts(records)
	if err == nil {
		err = l.db.Pipeline(ctx, slices.Concat(moves, events, checkpoints))
	}
	if err != nil {
		for t := range start {
			delete(l.known, t)
		}
		return false
	}
	maps.Copy(l.known, heads)
	l.noteHeads(ctx, signed)
	l.tell(ctx, batch, make([]error, len(batch)))
	for _, u := range batch {
		u.done <- nil
	}
	return true
}

// chain gives u's events their places in the chain after h, and answers
// the head after them.
func chain(u *unit, h head) (head, error) {
	for j := range u.records {
		r := &u.records[j]
		if err := r.encodeDetails(); err != nil {
			return h, err
		}
		r.Seq = h.seq + 1
		r.PrevHash = h.hash
		r.Hash = r.hash()
		h = head{seq: r.Seq, hash: r.Hash}
	}
	return h, nil
}

// advance returns the statements that move every tenant's head that the
// batch moved from start to heads, each naming the head it follows (so
// that it changes nothing, failing the batch, when that head has moved
// meanwhile), those that sign the checkpoints crossed, and the signed
// heads for the anchor; tenants in order, so that nodes never deadlock.
func (l *Log) advance(ctx context.Context, q sqldb.Q, start, heads map[string]head) (moves, checkpoints []sqldb.Stmt, signed []tenantHead, err error) {
	now := l.now().UnixMicro()
	for _, t := range slices.Sorted(maps.Keys(heads)) {
		h, from := heads[t], start[t]
		if h.seq == from.seq {
			continue
		}
		sh, err := l.sign(ctx, q, t, h, now)
		if err != nil {
			return nil, nil, nil, err
		}
		moves = append(moves, sqldb.Stmt{SQL: `UPDATE audit_heads SET seq = ?, hash = ?, updated_at = ?, signed_at = ?, signature = ?
			WHERE tenant_id = ? AND seq = ? AND hash = ?`, Args: []any{h.seq, h.hash, now, sh.At, sh.Signature, t, from.seq, from.hash}, Changes: true})
		if sh.Signature != nil {
			signed = append(signed, tenantHead{t, sh})
			if h.seq/l.checkpointEvery > from.seq/l.checkpointEvery {
				checkpoints = append(checkpoints, checkpointStmt(t, h, sh))
			}
		}
	}
	return moves, checkpoints, signed, nil
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
		_, seen := l.known[t]
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
	stmts, err := recordStmts(rs)
	if err == nil {
		err = tx.Run(ctx, stmts)
	}
	if err != nil {
		return fmt.Errorf("append audit events: %w", err)
	}
	return nil
}

// recordStmts returns the statements that insert rs and index them by
// the people they name.
func recordStmts(rs []*record) ([]sqldb.Stmt, error) {
	events := make([][]any, 0, len(rs))
	var named [][]any
	for _, r := range rs {
		events = append(events, []any{r.TenantID, r.Seq, r.ID, r.At, r.ActorType, r.ActorID, r.ActorSubjectID, r.ActorCT, r.Action,
			r.TargetType, r.TargetID, r.SubjectID, r.Outcome, r.RequestID, r.Details, r.PrevHash, r.Hash})
		for _, id := range r.subjects {
			named = append(named, []any{r.TenantID, r.Seq, id})
		}
	}
	stmts, err := sqldb.InsertStmts("audit_events", eventColumns, events)
	if err != nil {
		return nil, err
	}
	byPerson, err := sqldb.InsertStmts("audit_event_subjects", []string{"tenant_id", "seq", "subject_id"}, named)
	return append(stmts, byPerson...), err
}

var eventColumns = []string{"tenant_id", "seq", "id", "at", "actor_type", "actor_id", "actor_subject_id",
	"actor_ct", "action", "target_type", "target_id", "subject_id", "outcome", "request_id", "details", "prev_hash", "hash"}

type tenantHead struct {
	tenantID string
	head     anchor.Head
}

// sign signs h, tenantID's new head, at `at`. A tenant whose keys do not
// exist (yet) gets an unsigned head, which Verify refuses.
func (l *Log) sign(ctx context.Context, q sqldb.Q, tenantID string, h head, at int64) (anchor.Head, error) {
	key, err := l.keys.AuditSigningKey(ctx, q, tenantID)
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

// checkpointStmt keeps a signed head for good (heads move on).
func checkpointStmt(tenantID string, h head, signed anchor.Head) sqldb.Stmt {
	return sqldb.Stmt{SQL: `INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, seq) DO NOTHING`, Args: []any{tenantID, h.seq, h.hash, signed.At, signed.Signature}}
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
		sh, err := l.sign(ctx, tx.Q, tenantID, h, l.now().UnixMicro())
		if err != nil || sh.Signature == nil { // no keys (yet): nothing to sign with
			return err
		}
		return tx.Run(ctx, []sqldb.Stmt{checkpointStmt(tenantID, h, sh)})
	})
}
