package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/sqldb"
)

// snapshot copies tenantID's audit rows aside (as a backup of the database
// would hold them); rollBack puts them back in place of the current ones.
func snapshot(t *testing.T, env *coretest.Env, name, tid string) {
	t.Helper()
	for _, table := range []string{"audit_events", "audit_heads", "audit_checkpoints"} {
		exec(t, env, "CREATE TABLE "+name+"_"+table+" AS SELECT * FROM "+table+" WHERE tenant_id = ?", tid)
	}
}

func rollBack(t *testing.T, env *coretest.Env, name, tid string) {
	t.Helper()
	for _, table := range []string{"audit_events", "audit_heads", "audit_checkpoints"} {
		exec(t, env, "DELETE FROM "+table+" WHERE tenant_id = ?", tid)
		exec(t, env, "INSERT INTO "+table+" SELECT * FROM "+name+"_"+table)
	}
}

// TestWhatADatabaseWriterCannotDo: someone who can write the database —
// but holds neither the master key nor the anchor's location — deletes,
// drops, cuts, re-signs or rolls back the trail; verify fails each time,
// naming the layer that caught it and where.
func TestWhatADatabaseWriterCannotDo(t *testing.T) {
	cases := []struct {
		name           string
		tamper         func(t *testing.T, env *coretest.Env, tid string)
		layer, missing string // missing: "" for any
		problem        string
	}{
		{"delete the whole trail", func(t *testing.T, env *coretest.Env, tid string) {
			for _, table := range []string{"audit_events", "audit_heads", "audit_checkpoints"} {
				exec(t, env, "DELETE FROM "+table+" WHERE tenant_id = ?", tid)
			}
		}, audit.LayerAnchor, "1-25", "rolled back or truncated"},
		{"drop an event and recompute the chain", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq = 9", tid)
			exec(t, env, "UPDATE audit_events SET seq = -seq WHERE tenant_id = ? AND seq > 9", tid)
			exec(t, env, "UPDATE audit_events SET seq = -seq - 1 WHERE tenant_id = ? AND seq < 0", tid)
			exec(t, env, "DELETE FROM audit_checkpoints WHERE tenant_id = ?", tid)
			exec(t, env, "UPDATE audit_heads SET seq = 24 WHERE tenant_id = ?", tid)
			ctx := context.Background()
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return audit.RehashForTest(ctx, tx, tid, 9) }); err != nil {
				t.Fatal(err)
			}
		}, audit.LayerSignature, "", "signature does not verify"},
		{"cut the tail and rewrite the head", func(t *testing.T, env *coretest.Env, tid string) {
			exec(t, env, "DELETE FROM audit_events WHERE tenant_id = ? AND seq > 14", tid)
			exec(t, env, "DELETE FROM audit_checkpoints WHERE tenant_id = ? AND seq > 14", tid)
			exec(t, env, `UPDATE audit_heads SET seq = 14, hash = (SELECT hash FROM audit_events WHERE tenant_id = ? AND seq = 14)
				WHERE tenant_id = ?`, tid, tid)
		}, audit.LayerSignature, "", "signature does not verify"},
		{"swap the public key and re-sign", func(t *testing.T, env *coretest.Env, tid string) {
			rewriteFrom(t, env, tid, 5)
			pub, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			exec(t, env, "UPDATE tenant_secrets SET public = ? WHERE tenant_id = ? AND name = 'audit-signing'", []byte(pub), tid)
			ctx := context.Background()
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return audit.ResignForTest(ctx, tx, tid, key) }); err != nil {
				t.Fatal(err)
			}
		}, audit.LayerSignature, "", "does not verify with the tenant's audit key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coretest.Run(t, func(t *testing.T, env *coretest.Env) {
				fill(t, env, 25)
				if v := verify(t, env); !v.OK || v.Anchored != 25 {
					t.Fatalf("before: %+v; want intact and anchored at 25", v)
				}
				c.tamper(t, env, env.Tenant.ID)
				v := verify(t, env)
				if v.OK || v.Layer != c.layer || c.missing != "" && v.Missing != c.missing || !strings.Contains(v.Problem, c.problem) {
					t.Errorf("%s: %+v; want the %s layer failing (%q, missing %q)", c.name, v, c.layer, c.problem, c.missing)
				}
			})
		})
	}
}

// TestRollbackAndLostAnchor: a database rolled back to an older copy of
// its trail — even with that copy's own valid signed head, and across a
// restart — fails at the anchor, naming the events lost; so does a trail
// whose anchor was deleted, until the next start anchors it again and
// says so in the trail.
func TestRollbackAndLostAnchor(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		fill(t, env, 14)
		snapshot(t, env, "old", tid)
		fill(t, env, 25)
		rollBack(t, env, "old", tid)
		v := verify(t, env)
		if v.OK || v.Layer != audit.LayerAnchor || v.Missing != "15-25" {
			t.Errorf("rolled back: %+v; want the anchor layer, events 15-25 missing", v)
		}
		restart(t, env)
		if v := verify(t, env); v.OK || v.Missing != "15-25" {
			t.Errorf("rolled back, after a restart: %+v; want events 15-25 missing", v)
		}
		if err := env.Core.Log.Record(ctx, tid, audit.Event{Action: "test.after", TargetType: "test"}); err != nil {
			t.Fatal(err)
		}
		if v := verify(t, env); v.OK || v.Layer != audit.LayerAnchor {
			t.Errorf("new events after a rollback: %+v; the anchor must not move back", v)
		}

		// The anchor deleted: verify fails until a start anchors the chain
		// again, which the trail records.
		other, _ := env.AddTenant(t, "globex", "owner@globex.example")
		if v, err := env.Core.Log.Verify(ctx, other.ID); err != nil || !v.OK {
			t.Fatalf("globex before: %+v %v", v, err)
		}
		restart(t, env) // its anchor object is written at Close
		removeAnchor(t, env)
		if v, err := env.Core.Log.Verify(ctx, other.ID); err != nil || v.OK || v.Layer != audit.LayerAnchor || !strings.Contains(v.Problem, "holds no head") {
			t.Errorf("anchor deleted: %+v %v; want the anchor layer failing", v, err)
		}
		restart(t, env)
		anchored, err := env.Core.Log.AnchorUnanchored(ctx)
		if err != nil || len(anchored) != 2 {
			t.Errorf("anchored again: %v %v; want both tenants", anchored, err)
		}
		if v, err := env.Core.Log.Verify(ctx, other.ID); err != nil || !v.OK {
			t.Errorf("globex anchored again: %+v %v", v, err)
		}
		es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, other.ID, audit.Filter{Action: "audit.anchor.begin", Limit: 10})
		if err != nil || len(es) != 1 {
			t.Errorf("the trail does not say the anchoring began again: %+v %v", es, err)
		}
	})
}

// TestAnchorKeepsVerifyPassing: a clean restart, a rotation of the
// tenant's keys and two nodes sharing one anchor location (each its own
// object; verify takes the highest head) all keep verify passing.
func TestAnchorKeepsVerifyPassing(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		fill(t, env, 12)
		restart(t, env)
		if v := verify(t, env); !v.OK || v.Anchored != 12 {
			t.Errorf("after a clean restart: %+v", v)
		}
		if _, err := env.Core.Keys.Rotate(ctx, env.Core.DB, env.Tenant.ID, nil); err != nil {
			t.Fatal(err)
		}
		fill(t, env, 20)
		if v := verify(t, env); !v.OK {
			t.Errorf("after a key rotation: %+v", v)
		}
		// A second node on the same database and anchor location.
		cfg := env.Core.Config
		cfg.Node = "node-b"
		b, err := core.Open(ctx, cfg, &core.Options{Now: env.Now.Now, LogOutput: env.Logs, Test: core.TestOptions{NoSync: true, CheapHash: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for i := range 10 {
			log := map[bool]*audit.Log{true: env.Core.Log, false: b.Log}[i%2 == 0]
			if err := log.Record(ctx, env.Tenant.ID, audit.Event{Action: "test.node", TargetType: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Anchor.Flush(ctx); err != nil { // node-b's last head; verify flushes only its own node's
			t.Fatal(err)
		}
		for name, log := range map[string]*audit.Log{"first node": env.Core.Log, "node-b": b.Log} {
			if v, err := log.Verify(ctx, env.Tenant.ID); err != nil || !v.OK || v.Anchored != v.Events {
				t.Errorf("verify on %s: %+v %v; want intact, anchored at the last event", name, v, err)
			}
		}
		if objs, err := filepath.Glob(filepath.Join(env.DataDir, "anchor", "*.json")); err != nil || len(objs) != 2 {
			t.Errorf("anchor objects: %v %v; want one per node", objs, err)
		}
	})
}

// restart closes env's core and opens it again on the same data dir and
// database, as a clean restart of the server does.
func restart(t *testing.T, env *coretest.Env) {
	t.Helper()
	if err := env.Core.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := core.Open(context.Background(), env.Core.Config, &core.Options{Now: env.Now.Now, LogOutput: env.Logs,
		Audit: audit.Options{CheckpointEvery: 10}, Test: core.TestOptions{NoSync: true, CheapHash: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	env.Core = c
}

func removeAnchor(t *testing.T, env *coretest.Env) {
	t.Helper()
	objs, err := filepath.Glob(filepath.Join(env.DataDir, "anchor", "*.json"))
	if err != nil || len(objs) == 0 {
		t.Fatalf("no anchor objects: %v", err)
	}
	for _, o := range objs {
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
}
