package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/sqldb"
)

// A caller that gives up while its unit runs inside a batch must not break
// the batch's connection under the other units (on PostgreSQL a query
// cancelled while it runs closes the connection). The cancellation happens
// at a known point: while the unit's statement runs.
func TestOneCallerGivingUpBreaksNoOtherWrite(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		log, tid := env.Core.Log, env.Tenant.ID
		bg := context.Background()

		// Hold the committer inside a first batch until both units wait.
		inside, release := make(chan struct{}), make(chan struct{})
		held := make(chan error, 1)
		go func() {
			held <- log.Commit(bg, tid, func(ctx context.Context, tx *sqldb.Tx) error {
				close(inside)
				<-release
				return nil
			}, audit.Event{Action: "test.hold", TargetType: "test", TargetID: "hold"})
		}()
		<-inside

		actor := audit.Actor{Type: audit.ActorToken, ID: "token-of-the-quitter"}
		quitCtx, quit := context.WithCancel(audit.WithActor(bg, actor))
		defer quit()
		quitter := make(chan error, 1)
		var sawActor audit.Actor
		go func() {
			quitter <- log.Commit(quitCtx, tid, func(ctx context.Context, tx *sqldb.Tx) error {
				sawActor = audit.ActorFrom(ctx)
				// The client hangs up while the unit's statement runs.
				time.AfterFunc(50*time.Millisecond, quit)
				_, err := tx.Exec(ctx, slowQuery(env.Core.DB.Dialect()))
				return err
			}, audit.Event{Action: "test.quitter", TargetType: "test", TargetID: "quitter"})
		}()
		waitQueued(t, log, 1)
		other := make(chan error, 1)
		go func() {
			other <- log.Commit(bg, tid, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE tenants SET name = name WHERE id = ?", tid)
				return err
			}, audit.Event{Action: "test.other", TargetType: "test", TargetID: "other"})
		}()
		waitQueued(t, log, 2)
		close(release)

		if err := <-held; err != nil {
			t.Fatalf("holding unit: %v", err)
		}
		if err := <-other; err != nil {
			t.Fatalf("a unit batched with a cancelled one failed: %v", err)
		}
		if err := <-quitter; err != nil {
			t.Errorf("the cancelled unit, once queued, should commit on its own merits: %v", err)
		}
		if sawActor != actor {
			t.Errorf("the unit's context lost the request's values: actor %+v", sawActor)
		}
		// The connection is still good for the next batch, and the chain whole.
		if err := log.Record(bg, tid, audit.Event{Action: "test.after", TargetType: "test", TargetID: "after"}); err != nil {
			t.Fatalf("next batch: %v", err)
		}
		if v := verify(t, env); !v.OK {
			t.Fatalf("chain after a cancelled member: %s", v)
		}
	})
}

// slowQuery takes a few hundred milliseconds.
func slowQuery(d sqldb.Dialect) string {
	if d == sqldb.Postgres {
		return "SELECT pg_sleep(0.3)"
	}
	return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT count(*) FROM c"
}

func waitQueued(t *testing.T, log *audit.Log, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); audit.QueuedForTest(log) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d units queued, want %d", audit.QueuedForTest(log), n)
		}
		time.Sleep(time.Millisecond)
	}
}
