package audit

import (
	"context"
	"crypto/ed25519"

	"github.com/custodia/custodia/internal/sqldb"
)

// RehashForTest recomputes the hash chain of tenantID from seq on, as an
// attacker with write access to the database could, and moves the head.
func RehashForTest(ctx context.Context, tx *sqldb.Tx, tenantID string, from int64) error {
	rows, err := tx.Query(ctx, `SELECT seq, id, at, actor_type, actor_id, actor_subject_id, actor_ct, action,
		target_type, target_id, subject_id, outcome, request_id, details, prev_hash, hash
		FROM audit_events WHERE tenant_id = ? AND seq >= ? - 1 ORDER BY seq`, tenantID, from)
	if err != nil {
		return err
	}
	var recs []record
	for rows.Next() {
		r := record{TenantID: tenantID}
		if err := rows.Scan(&r.Seq, &r.ID, &r.At, &r.ActorType, &r.ActorID, &r.ActorSubjectID, &r.ActorCT, &r.Action,
			&r.TargetType, &r.TargetID, &r.SubjectID, &r.Outcome, &r.RequestID, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			rows.Close()
			return err
		}
		recs = append(recs, r)
	}
	rows.Close()
	prev := recs[0].Hash
	for _, r := range recs[1:] {
		r.PrevHash = prev
		r.Hash = r.hash()
		if _, err := tx.Exec(ctx, "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?",
			r.PrevHash, r.Hash, tenantID, r.Seq); err != nil {
			return err
		}
		prev = r.Hash
	}
	_, err = tx.Exec(ctx, "UPDATE audit_heads SET hash = ? WHERE tenant_id = ?", prev, tenantID)
	return err
}

// ResignForTest signs tenantID's head and every checkpoint (moved to the
// chain's current hashes) with key, as an attacker who swapped the
// tenant's public key in the database would.
func ResignForTest(ctx context.Context, tx *sqldb.Tx, tenantID string, key ed25519.PrivateKey) error {
	var h head
	var at int64
	if err := tx.QueryRow(ctx, "SELECT seq, hash, signed_at FROM audit_heads WHERE tenant_id = ?", tenantID).Scan(&h.seq, &h.hash, &at); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE audit_heads SET signature = ? WHERE tenant_id = ?",
		ed25519.Sign(key, checkpointMessage(tenantID, h.seq, h.hash, at)), tenantID); err != nil {
		return err
	}
	cps, err := loadCheckpoints(ctx, tx.Q, tenantID)
	if err != nil {
		return err
	}
	for seq, cp := range cps {
		if err := tx.QueryRow(ctx, "SELECT hash FROM audit_events WHERE tenant_id = ? AND seq = ?", tenantID, seq).Scan(&cp.hash); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE audit_checkpoints SET hash = ?, signature = ? WHERE tenant_id = ? AND seq = ?",
			cp.hash, ed25519.Sign(key, checkpointMessage(tenantID, seq, cp.hash, cp.at)), tenantID, seq); err != nil {
			return err
		}
	}
	return nil
}

// QueuedForTest is how many units wait for the committer.
func QueuedForTest(l *Log) int { return len(l.queue) }
