package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"

	"github.com/custodia/custodia/internal/anchor"
)

// Restored sets the anchor up again for tenantID's chain after the
// database was restored from a backup whose signed head was base, and
// records it in the tenant's own trail: a signed mark in the anchor says
// the chain went back to base and which anchored events were lost (those
// anchored since, where the anchor survived), then a "backup.restore"
// event — whose details also say what was lost — goes on from base, so
// Verify passes on the restored data without hiding the rollback. It
// answers the last anchored event lost, or 0 when no anchored head beyond
// base survived.
func (l *Log) Restored(ctx context.Context, tenantID string, base anchor.Head, details map[string]any) (int64, error) {
	if l.anchor == nil {
		return 0, fmt.Errorf("no audit anchor is configured")
	}
	key, err := l.keys.AuditSigningKey(ctx, l.db.Read(), tenantID)
	if err != nil {
		return 0, fmt.Errorf("the tenant's audit key: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if !ed25519.Verify(pub, checkpointMessage(tenantID, base.Seq, base.Hash, base.At), base.Signature) {
		return 0, fmt.Errorf("the backup's audit head of tenant %s is not signed by the tenant's audit key", tenantID)
	}
	all, err := l.anchor.Read(ctx)
	if err != nil {
		return 0, err
	}
	survived := all[tenantID].Head
	m := anchor.Mark{Kind: anchor.Restored, From: base.Seq + 1, Hash: base.Hash, At: max(l.now().UnixMicro(), survived.At+1), Key: pub}
	if survived.Seq > base.Seq {
		m.To = survived.Seq
	}
	m.Signature = ed25519.Sign(key, markMessage(tenantID, m))
	base.Key = pub
	l.anchor.Restart(tenantID, m, base)
	if err := l.anchor.Flush(ctx); err != nil {
		return 0, err
	}
	d := map[string]any{"events_lost_from": m.From}
	if m.To > 0 {
		d["events_lost_to"] = m.To
	} else {
		d["events_lost_to"] = "unknown: no anchored head beyond the backup survived (" + l.anchor.Location() + ")"
	}
	for k, v := range details {
		d[k] = v
	}
	err = l.Record(ctx, tenantID, Event{Action: "backup.restore", TargetType: "audit", TargetID: tenantID, Details: d})
	if err != nil {
		return 0, err
	}
	return m.To, l.anchor.Flush(ctx)
}

// markMessage is what a mark's signature covers.
func markMessage(tenantID string, m anchor.Mark) []byte {
	return []byte("custodia/v1 audit mark\x00" + tenantID + "\x00" + m.Kind + "\x00" + strconv.FormatInt(m.From, 10) + "\x00" +
		strconv.FormatInt(m.To, 10) + "\x00" + fmt.Sprintf("%x", m.Hash) + "\x00" + strconv.FormatInt(m.At, 10))
}
