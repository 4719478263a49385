package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"

	"github.com/custodia/custodia/internal/sqldb"
)

// Verdict is the outcome of verifying a tenant's chain.
type Verdict struct {
	OK          bool   `json:"ok"`
	Events      int64  `json:"events"`
	Head        string `json:"head"`                // hex hash of the last event
	Checkpoints int    `json:"checkpoints"`         // signed checkpoints checked
	FirstBad    int64  `json:"first_bad,omitempty"` // position of the first bad event
	Problem     string `json:"problem,omitempty"`
}

func (v Verdict) String() string {
	if v.OK {
		return fmt.Sprintf("audit chain intact: %d events, %d signed checkpoints, head %s", v.Events, v.Checkpoints, v.Head)
	}
	return fmt.Sprintf("audit chain BROKEN at event %d: %s (%d events read)", v.FirstBad, v.Problem, v.Events)
}

type checkpointRow struct {
	seq       int64
	hash      []byte
	at        int64
	signature []byte
}

// Verify recomputes tenantID's chain from the first event and checks the
// stored head and every signed checkpoint. It reads only; public keys need
// no master key.
func Verify(ctx context.Context, db *sqldb.DB, public ed25519.PublicKey, tenantID string) (Verdict, error) {
	q := db.Read()
	cps, err := loadCheckpoints(ctx, q, tenantID)
	if err != nil {
		return Verdict{}, err
	}
	v := Verdict{}
	fail := func(seq int64, format string, args ...any) (Verdict, error) {
		v.OK, v.FirstBad, v.Problem = false, seq, fmt.Sprintf(format, args...)
		return v, nil
	}
	rows, err := q.Query(ctx, `SELECT seq, id, at, actor_type, actor_id, actor_subject_id, actor_ct, action,
		target_type, target_id, subject_id, outcome, request_id, details, prev_hash, hash
		FROM audit_events WHERE tenant_id = ? ORDER BY seq`, tenantID)
	if err != nil {
		return v, fmt.Errorf("read audit events: %w", err)
	}
	defer rows.Close()
	prev := genesis(tenantID)
	var last int64
	for rows.Next() {
		r := record{TenantID: tenantID}
		if err := rows.Scan(&r.Seq, &r.ID, &r.At, &r.ActorType, &r.ActorID, &r.ActorSubjectID, &r.ActorCT, &r.Action,
			&r.TargetType, &r.TargetID, &r.SubjectID, &r.Outcome, &r.RequestID, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			return v, fmt.Errorf("read audit event: %w", err)
		}
		v.Events++
		switch {
		case r.Seq != last+1:
			return fail(last+1, "event missing (next stored event is %d)", r.Seq)
		case !bytes.Equal(r.PrevHash, prev):
			return fail(r.Seq, "does not follow the event before it (removed, reordered or altered)")
		case !bytes.Equal(r.hash(), r.Hash):
			return fail(r.Seq, "content does not match its hash (altered)")
		}
		if cp, ok := cps[r.Seq]; ok {
			if !bytes.Equal(cp.hash, r.Hash) {
				return fail(r.Seq, "differs from the signed checkpoint at this position")
			}
			v.Checkpoints++
		}
		prev, last = r.Hash, r.Seq
	}
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("read audit events: %w", err)
	}
	for seq, cp := range cps {
		if !ed25519.Verify(public, checkpointMessage(tenantID, seq, cp.hash, cp.at), cp.signature) {
			return fail(seq, "checkpoint signature does not verify")
		}
		if seq > last {
			return fail(last+1, "events up to signed checkpoint %d are missing (truncated)", seq)
		}
	}
	var h head
	err = q.QueryRow(ctx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = ?", tenantID).Scan(&h.seq, &h.hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if last != 0 {
			return fail(1, "the chain head record is missing")
		}
	case err != nil:
		return v, fmt.Errorf("read audit head: %w", err)
	case h.seq != last:
		return fail(min(h.seq, last)+1, "the chain head says %d events, %d found (truncated)", h.seq, last)
	case last > 0 && !bytes.Equal(h.hash, prev):
		return fail(last, "the last event differs from the chain head")
	}
	v.OK = true
	v.Head = fmt.Sprintf("%x", prev)
	return v, nil
}

func loadCheckpoints(ctx context.Context, q sqldb.Q, tenantID string) (map[int64]checkpointRow, error) {
	rows, err := q.Query(ctx, "SELECT seq, hash, at, signature FROM audit_checkpoints WHERE tenant_id = ?", tenantID)
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	defer rows.Close()
	cps := map[int64]checkpointRow{}
	for rows.Next() {
		var c checkpointRow
		if err := rows.Scan(&c.seq, &c.hash, &c.at, &c.signature); err != nil {
			return nil, err
		}
		cps[c.seq] = c
	}
	return cps, rows.Err()
}
