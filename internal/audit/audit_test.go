package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func verify(t *testing.T, env *coretest.Env) audit.Verdict {
	t.Helper()
	ctx := context.Background()
	v, err := env.Core.Log.Verify(ctx, env.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fill appends events until the tenant's chain holds n.
func fill(t *testing.T, env *coretest.Env, n int64) {
	t.Helper()
	ctx := context.Background()
	for v := verify(t, env); v.Events < n; v.Events++ {
		if err := env.Core.Log.Record(ctx, env.Tenant.ID, audit.Event{Action: "test.event", TargetType: "test",
			TargetID: fmt.Sprint(v.Events + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

func exec(t *testing.T, env *coretest.Env, query string, args ...any) {
	t.Helper()
	sqldbtest.Exec(t, env.Core.DB, query, args...)
}

func TestTamperingIsDetected(t *testing.T) {
	cases := []struct {
		name     string
		tamper   func(t *testing.T, env *coretest.Env, tid string)
		firstBad int64
	}{
		{"change action", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "UPDATE audit_events SET action = 'subject.read' WHERE tenant_id = ? AND seq = 7", tid)
		}, 7},
		{"change time", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "UPDATE audit_events SET at = at + 1 WHERE tenant_id = ? AND seq = 12", tid)
		}, 12},
		{"change outcome", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "UPDATE audit_events SET outcome = 'failure' WHERE tenant_id = ? AND seq = 3", tid)
		}, 3},
		{"delete one", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq = 9", tid)
		}, 9},
		{"reorder two", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "UPDATE audit_events SET seq = -1 WHERE tenant_id = ? AND seq = 14", tid)
			exec(t, env, "UPDATE audit_events SET seq = 14 WHERE tenant_id = ? AND seq = 15", tid)
			exec(t, env, "UPDATE audit_events SET seq = 15 WHERE tenant_id = ? AND seq = -1", tid)
		}, 14},
		{"delete the last", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq = 25", tid)
		}, 25},
		{"truncate and rewrite the head", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq > 14", tid)
			exec(t, env, `UPDATE audit_heads SET seq = 14, hash = (SELECT hash FROM audit_events WHERE tenant_id = ? AND seq = 14)
				WHERE tenant_id = ?`, tid, tid)
		}, 15},
		{"rewrite the chain from an event on", func(t *testing.T, env *coretest.Env, tid string) {
			// The attacker recomputes every hash after altering event 5; the
			// signed checkpoint at 10 (CheckpointEvery is 10 in apptest) catches it.
			rewriteFrom(t, env, tid, 5)
		}, 10},
		{"forge a checkpoint", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "UPDATE audit_checkpoints SET at = at + 1 WHERE tenant_id = ?", tid)
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coretest.Run(t, func(t *testing.T, env *coretest.Env) {
				fill(t, env, 25)
				if v := verify(t, env); !v.OK || v.Events != 25 || v.Checkpoints < 2 {
					t.Fatalf("before tampering: %+v; want intact, 25 events, ≥2 checkpoints", v)
				}
				c.tamper(t, env, env.Tenant.ID)
				v := verify(t, env)
				if v.OK {
					t.Fatalf("tampering not detected: %+v", v)
				}
				if c.firstBad != 0 && v.FirstBad != c.firstBad {
					t.Errorf("first bad = %d (%s); want %d", v.FirstBad, v.Problem, c.firstBad)
				}
			})
		})
	}
}

// rewriteFrom alters event from and recomputes every later hash the way a
// careful attacker with database access would, through the public
// Rehash helper used only by this test.
func rewriteFrom(t *testing.T, env *coretest.Env, tid string, from int64) {
	t.Helper()
	ctx := context.Background()
	exec(t, env, "UPDATE audit_events SET action = 'forged' WHERE tenant_id = ? AND seq = ?", tid, from)
	if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return audit.RehashForTest(ctx, tx, tid, from) }); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentCommitsFormOneChain(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		before := verify(t, env).Events
		var wg sync.WaitGroup
		errc := make(chan error, 16*40)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					errc <- env.Core.Log.Record(ctx, env.Tenant.ID, audit.Event{Action: "test.concurrent", TargetType: "w", TargetID: fmt.Sprint(w, "-", i)})
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Fatal(err)
			}
		}
		v := verify(t, env)
		if !v.OK || v.Events != before+640 {
			t.Fatalf("after 640 concurrent appends: %+v; want intact with %d events", v, before+640)
		}
	})
}

func TestFailedUnitWritesNothing(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		before := verify(t, env).Events
		boom := errors.New("boom")
		var wg sync.WaitGroup
		results := make([]error, 40)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = env.Core.Log.Commit(ctx, env.Tenant.ID, func(ctx context.Context, tx *sqldb.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES (?, 0, ?, 0)",
						fmt.Sprintf("probe-%d", i), []byte{1}); err != nil {
						return err
					}
					if i%2 == 1 {
						return boom // after writing: the savepoint must undo the insert
					}
					return nil
				}, audit.Event{Action: "test.unit", TargetType: "unit", TargetID: fmt.Sprint(i)})
			}()
		}
		wg.Wait()
		for i, err := range results {
			if want := map[bool]error{true: boom, false: nil}[i%2 == 1]; !errors.Is(err, want) && err != want {
				t.Fatalf("unit %d: %v; want %v", i, err, want)
			}
		}
		v := verify(t, env)
		if !v.OK || v.Events != before+20 {
			t.Fatalf("%+v; want intact with %d events (only the successful units)", v, before+20)
		}
		var probes int
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT count(*) FROM audit_heads WHERE tenant_id LIKE 'probe-%'").Scan(&probes); err != nil {
			t.Fatal(err)
		}
		if probes != 20 {
			t.Fatalf("%d rows of successful units; want 20 (failed units' writes must be undone)", probes)
		}
	})
}

// The events of a batch go in together at the end, outside the units'
// savepoints; when that insert fails all the same (PostgreSQL refuses a
// NUL byte in text), the batch runs again with a savepoint for every unit
// and its events inside it: the others commit, the failing one is told
// alone — its own writes undone — and the chain has exactly the good events.
func TestEventsAloneNeverSinkABatch(t *testing.T) {
	env := coretest.New(t, sqldbtest.PostgresURL(t))
	ctx := context.Background()
	before := verify(t, env).Events
	var wg sync.WaitGroup
	results := make([]error, 40)
	bad := func(i int) bool { return i%10 == 3 || i%10 == 4 }
	for i := range results {
		wg.Go(func() {
			target := fmt.Sprint(i)
			if bad(i) {
				target = "bad\x00target"
			}
			var fn func(ctx context.Context, tx *sqldb.Tx) error
			if i%2 == 0 { // a unit with writes of its own
				fn = func(ctx context.Context, tx *sqldb.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES (?, 0, ?, 0)",
						fmt.Sprintf("probe-%d", i), []byte{1})
					return err
				}
			}
			results[i] = env.Core.Log.Commit(ctx, env.Tenant.ID, fn, audit.Event{Action: "test.event", TargetType: "unit", TargetID: target})
		})
	}
	wg.Wait()
	failed := 0
	for i, err := range results {
		if (err != nil) != bad(i) {
			t.Errorf("unit %d: %v", i, err)
		}
		if err != nil {
			failed++
		}
	}
	if v := verify(t, env); !v.OK || v.Events != before+int64(len(results)-failed) || failed != 8 {
		t.Fatalf("%+v, %d failed; want intact with the %d good events", v, failed, len(results)-8)
	}
	probes := sqldbtest.Strings(t, env.Core.DB, "SELECT tenant_id FROM audit_heads WHERE tenant_id LIKE 'probe-%' ORDER BY tenant_id")
	if len(probes) != 16 || slices.Contains(probes, "probe-4") || slices.Contains(probes, "probe-14") {
		t.Fatalf("writes of units that went in: %v; want the 16 good ones, none of probe-4, -14, -24, -34", probes)
	}
}

func TestActorIsSealedAndSurvivesErasure(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		sub, err := env.Core.Subjects.Create(ctx, tid, subject.New{Email: "actor.person@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		key, err := env.Core.Subjects.Key(ctx, tid, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		actx := audit.WithActor(ctx, audit.Actor{Type: audit.ActorUser, ID: "u1", SubjectID: sub.ID,
			Display: "actor.person@example.org", IP: "203.0.113.9", UserAgent: "probe/1.0", Key: key})
		if err := env.Core.Log.Record(actx, tid, audit.Event{Action: "test.acted", TargetType: "x", TargetID: "1"}); err != nil {
			t.Fatal(err)
		}
		var ct []byte
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT actor_ct FROM audit_events WHERE tenant_id = ? AND action = 'test.acted'", tid).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		for _, clear := range []string{"actor.person", "203.0.113.9", "probe/1.0"} {
			if len(ct) == 0 || bytes.Contains(ct, []byte(clear)) {
				t.Fatalf("actor_ct %q holds %q in clear (or is empty)", ct, clear)
			}
		}
		rd := audit.NewReader(env.Core.DB, env.Core.Keys)
		entries, _, err := rd.Query(ctx, tid, audit.Filter{Action: "test.acted"})
		if err != nil || len(entries) != 1 {
			t.Fatalf("Query: %v, %d entries", err, len(entries))
		}
		if e := entries[0]; e.Actor.Display != "actor.person@example.org" || e.IP != "203.0.113.9" || e.UserAgent != "probe/1.0" {
			t.Fatalf("revealed actor = %+v ip %q ua %q", e.Actor, e.IP, e.UserAgent)
		}
		// Crypto-shred the actor: the chain still verifies, the identity is gone.
		if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			return env.Core.Keys.DestroySubjectKey(ctx, tx, tid, sub.ID)
		}); err != nil {
			t.Fatal(err)
		}
		entries, _, err = rd.Query(ctx, tid, audit.Filter{Action: "test.acted"})
		if err != nil || len(entries) != 1 {
			t.Fatalf("Query after erasure: %v", err)
		}
		if e := entries[0]; e.Actor.Display != "erased subject #"+sub.ID || e.IP != "" {
			t.Fatalf("after erasure actor = %+v ip %q; want erased subject #%s", e.Actor, e.IP, sub.ID)
		}
		if v := verify(t, env); !v.OK {
			t.Fatalf("chain broken by erasure: %+v", v)
		}
	})
}

func TestQueryFiltersAndPages(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		t0 := time.Now()
		for i := range 30 {
			action := "test.a"
			if i%3 == 0 {
				action = "other.b"
			}
			actx := audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: fmt.Sprint("actor-", i%2), SubjectID: fmt.Sprint("p", i%3)})
			outcome := audit.Success
			if i%10 == 0 {
				outcome = audit.Denied
			}
			if err := env.Core.Log.Record(actx, tid, audit.Event{Action: action, TargetType: "t", TargetID: fmt.Sprint(i),
				SubjectID: fmt.Sprint("s", i%5), Outcome: outcome}); err != nil {
				t.Fatal(err)
			}
		}
		// A list page: one event naming everyone it showed.
		if err := env.Core.Log.Record(ctx, tid, audit.Event{Action: "test.list", TargetType: "t", Subjects: []string{"s9", "s2", "s9"}}); err != nil {
			t.Fatal(err)
		}
		rd := audit.NewReader(env.Core.DB, env.Core.Keys)
		count := func(f audit.Filter) int {
			t.Helper()
			n := 0
			f.Limit = 4
			var last int64 = 1 << 62
			for {
				es, next, err := rd.Query(ctx, tid, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					if e.Seq >= last {
						t.Fatalf("pages not strictly newest first: %d after %d", e.Seq, last)
					}
					last = e.Seq
				}
				n += len(es)
				if next == "" {
					return n
				}
				f.Cursor = next
			}
		}
		for name, c := range map[string]struct {
			f    audit.Filter
			want int
		}{
			"action":         {audit.Filter{Action: "other.b"}, 10},
			"action prefix":  {audit.Filter{Action: "test.*"}, 21},
			"actor":          {audit.Filter{Actor: "actor-1"}, 15},
			"subject":        {audit.Filter{SubjectID: "s2"}, 7},
			"listed only":    {audit.Filter{SubjectID: "s9"}, 1},
			"list, filtered": {audit.Filter{SubjectID: "s2", Action: "test.*"}, 5},
			"combined":       {audit.Filter{Action: "test.a", Actor: "actor-0", SubjectID: "s4"}, 2},
			"from":           {audit.Filter{From: t0, Action: "test.*"}, 21},
			"to before all":  {audit.Filter{To: t0.Add(-time.Hour)}, 0},
			"window":         {audit.Filter{From: t0, To: time.Now().Add(time.Hour), Actor: "actor-0"}, 15},
			"outcome":        {audit.Filter{Outcome: audit.Denied}, 3},
			"people":         {audit.Filter{ActorSubjects: []string{"p1", "p2"}}, 20},
			"nobody":         {audit.Filter{ActorSubjects: []string{}}, 0},
		} {
			if got := count(c.f); got != c.want {
				t.Errorf("%s: %d events; want %d", name, got, c.want)
			}
		}
		if _, _, err := rd.Query(ctx, tid, audit.Filter{Cursor: "not-a-cursor"}); err == nil {
			t.Error("a bad cursor was accepted")
		}
		newest, _, err := rd.Query(ctx, tid, audit.Filter{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if h, err := rd.Head(ctx, tid); err != nil || h.Events != newest[0].Seq || h.Hash != newest[0].Hash {
			t.Errorf("head %+v, %v; want the newest event %d %s", h, err, newest[0].Seq, newest[0].Hash)
		}
	})
}

// The index of the people a list event names is checked against the
// event's chained details: a person removed from it (to hide a read from
// their access export) or added is detected.
func TestListedPeopleIndexIsVerified(t *testing.T) {
	for name, tamper := range map[string]string{
		"remove a person": "DELETE FROM audit_event_subjects WHERE tenant_id = ? AND seq = %d AND subject_id = 'b'",
		"add a person":    "INSERT INTO audit_event_subjects (tenant_id, seq, subject_id) VALUES (?, %d, 'z')",
		"move a person":   "UPDATE audit_event_subjects SET seq = seq - 1 WHERE tenant_id = ? AND seq = %d AND subject_id = 'a'",
	} {
		t.Run(name, func(t *testing.T) {
			coretest.Run(t, func(t *testing.T, env *coretest.Env) {
				ctx := context.Background()
				fill(t, env, 2)
				if err := env.Core.Log.Record(ctx, env.Tenant.ID, audit.Event{Action: "test.list", TargetType: "t", Subjects: []string{"c", "a", "b"}}); err != nil {
					t.Fatal(err)
				}
				v := verify(t, env)
				fill(t, env, v.Events+2)
				if v := verify(t, env); !v.OK {
					t.Fatalf("before tampering: %+v", v)
				}
				exec(t, env, fmt.Sprintf(tamper, v.Events), env.Tenant.ID)
				if got := verify(t, env); got.OK || got.FirstBad > v.Events || got.Layer != audit.LayerChain {
					t.Errorf("verdict %+v; want broken at event %d or before", got, v.Events)
				}
			})
		})
	}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	for in, want := range map[string]string{
		"=SUM(A1)": "'=SUM(A1)", "+1": "'+1", "-1": "'-1", "@cmd": "'@cmd", "\tx": "'\tx", "\rx": "'\rx",
		"plain": "plain", "": "", "a=b": "a=b",
	} {
		if got := audit.SafeCell(in); got != want {
			t.Errorf("SafeCell(%q) = %q; want %q", in, got, want)
		}
	}
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		evil := audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "=HYPERLINK(\"http://x\")"})
		if err := env.Core.Log.Record(evil, env.Tenant.ID, audit.Event{Action: "test.csv", TargetType: "@x", TargetID: "+1"}); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := audit.NewReader(env.Core.DB, env.Core.Keys).WriteCSV(ctx, &buf, env.Tenant.ID, audit.Filter{Action: "test.csv"}); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(rows) != 2 {
			t.Fatalf("CSV: %v, %d rows\n%s", err, len(rows), buf.String())
		}
		for _, cell := range rows[1] {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("cell %q starts with a formula character", cell)
			}
		}
	})
}

// TestCloseAnswersEveryCommit closes the log while commits race with it:
// every Commit returns (committed or ErrClosed), none hangs.
func TestCloseAnswersEveryCommit(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	log := audit.New(env.Core.DB, env.Core.Keys, time.Now, audit.Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := 0
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := log.Record(ctx, env.Tenant.ID, audit.Event{Action: "test.close", TargetType: "x", TargetID: fmt.Sprint(i)})
			switch {
			case err == nil:
				mu.Lock()
				committed++
				mu.Unlock()
			case !errors.Is(err, audit.ErrClosed):
				t.Error(err)
			}
		}()
	}
	log.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a Commit never returned after Close")
	}
	entries, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "test.close", Limit: 100})
	if err != nil || len(entries) != committed {
		t.Fatalf("%d events stored, %d commits acknowledged (%v)", len(entries), committed, err)
	}
}

// The committer appends events alone after the head its last batch left,
// without reading it first; whoever else moves the head — a second node or
// the command line going on, a restore taking it back — the next event
// still follows the head that is there.
func TestAHeadMovedElsewhereIsFollowed(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		record := func(l *audit.Log, target string) {
			t.Helper()
			if err := l.Record(ctx, tid, audit.Event{Action: "test.event", TargetType: "test", TargetID: target}); err != nil {
				t.Fatal(err)
			}
		}
		type link struct {
			seq        int64
			prev, hash []byte
		}
		last := func() link {
			t.Helper()
			var l link
			if err := env.Core.DB.Read().QueryRow(ctx, "SELECT seq, prev_hash, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
				tid).Scan(&l.seq, &l.prev, &l.hash); err != nil {
				t.Fatal(err)
			}
			return l
		}
		record(env.Core.Log, "ours")
		record(env.Core.Log, "ours again") // the head is known now
		other := audit.New(env.Core.DB, env.Core.Keys, time.Now, audit.Options{})
		defer other.Close()
		record(other, "theirs")
		theirs := last()
		record(env.Core.Log, "after theirs")
		if got := last(); got.seq != theirs.seq+1 || !bytes.Equal(got.prev, theirs.hash) {
			t.Fatalf("after another writer's event %d: ours is %d, following %x; want %d following %x", theirs.seq, got.seq, got.prev, theirs.seq+1, theirs.hash)
		}
		// Taken back, as a restore does: the last two events gone, the head
		// on the one before.
		back := last().seq - 2
		var hash []byte
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT hash FROM audit_events WHERE tenant_id = ? AND seq = ?", tid, back).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq > ?", tid, back)
		exec(t, env, "UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant_id = ?", back, hash, tid)
		record(env.Core.Log, "after the restore")
		if got := last(); got.seq != back+1 || !bytes.Equal(got.prev, hash) {
			t.Fatalf("after the head went back to %d: ours is %d, following %x; want %d following %x", back, got.seq, got.prev, back+1, hash)
		}
	})
}
