package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/sqldb"
)

// Verdict is the outcome of verifying a tenant's chain.
type Verdict struct {
	OK          bool   `json:"ok"`
	Events      int64  `json:"events"`
	Head        string `json:"head"`               // hex hash of the last event
	Checkpoints int    `json:"checkpoints"`        // signed checkpoints checked
	Anchored    int64  `json:"anchored"`           // position of the head anchored outside the database
	Restored    string `json:"restored,omitempty"` // the latest restore from a backup, and what it lost
	// Layer names what failed: "chain" (an event does not follow the one
	// before it, or its hash), "signature" (the signed head or a
	// checkpoint), or "anchor" (the chain against the head anchored
	// outside the database).
	Layer    string `json:"layer,omitempty"`
	FirstBad int64  `json:"first_bad,omitempty"` // position of the first bad event
	Missing  string `json:"missing,omitempty"`   // events missing, "from-to"
	Problem  string `json:"problem,omitempty"`
}

// The layers of Verdict.Layer.
const (
	LayerChain     = "chain"
	LayerSignature = "signature"
	LayerAnchor    = "anchor"
)

func (v Verdict) String() string {
	if v.OK {
		s := fmt.Sprintf("audit chain intact: %d events, head signed and anchored at event %d, %d signed checkpoints, head %s",
			v.Events, v.Anchored, v.Checkpoints, v.Head)
		if v.Restored != "" {
			s += " (" + v.Restored + ")"
		}
		return s
	}
	return fmt.Sprintf("audit chain BROKEN (%s) at event %d: %s (%d events read)", v.Layer, v.FirstBad, v.Problem, v.Events)
}

type checkpointRow struct {
	seq       int64
	hash      []byte
	at        int64
	signature []byte
}

// Verify recomputes tenantID's chain from the first event and checks it
// against what someone who writes the database cannot forge: the head must
// be signed, and every checkpoint, by a key the database alone does not
// vouch for (the public half of the master-key-wrapped seed, or one the
// anchor recorded); and the chain must reach the head anchored outside
// the database, with the same hash there. This node's anchor is written
// first, so what it committed is there.
func (l *Log) Verify(ctx context.Context, tenantID string) (Verdict, error) {
	v := Verdict{}
	fail := func(layer string, seq int64, format string, args ...any) (Verdict, error) {
		v.OK, v.Layer, v.FirstBad, v.Problem = false, layer, seq, fmt.Sprintf(format, args...)
		return v, nil
	}
	missing := func(from, to int64) string {
		v.Missing = fmt.Sprintf("%d-%d", from, to)
		if from == to {
			return fmt.Sprintf("event %d is missing", from)
		}
		return fmt.Sprintf("events %d to %d are missing", from, to)
	}
	seed, err := l.keys.AuditSigningKey(ctx, l.db.Read(), tenantID)
	if err != nil {
		return v, fmt.Errorf("the tenant's audit key: %w", err)
	}
	trusted := []ed25519.PublicKey{seed.Public().(ed25519.PublicKey)}
	var anchored anchor.Tenant
	haveAnchor := false
	if l.anchor != nil {
		if err := l.anchor.Flush(ctx); err != nil {
			return v, err
		}
		all, err := l.anchor.Read(ctx)
		if err != nil {
			return v, err
		}
		anchored, haveAnchor = all[tenantID]
		for _, k := range anchored.Keys {
			if len(k) == ed25519.PublicKeySize {
				trusted = append(trusted, ed25519.PublicKey(k))
			}
		}
	}
	signedBy := func(msg, sig []byte) bool {
		return slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, msg, sig) })
	}

	q := l.db.Read()
	cps, err := loadCheckpoints(ctx, q, tenantID)
	if err != nil {
		return Verdict{}, err
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
	var atAnchor []byte // the hash of the event at the anchored position
	// A restore's mark: the chain must go on from the backup's head.
	var restore anchor.Mark
	for _, m := range anchored.Marks {
		if !signedBy(markMessage(tenantID, m), m.Signature) {
			return fail(LayerAnchor, m.From, "a %s record in the audit anchor does not verify with the tenant's audit key (forged)", m.Kind)
		}
		if m.Kind == anchor.Restored && m.At > restore.At {
			restore = m
		}
	}
	restoredAt := restore.From - 1 // the backup's last event
	var atRestore []byte
	var named []namedSubject // the people events name in their chained details, in order
	for rows.Next() {
		r := record{TenantID: tenantID}
		if err := rows.Scan(&r.Seq, &r.ID, &r.At, &r.ActorType, &r.ActorID, &r.ActorSubjectID, &r.ActorCT, &r.Action,
			&r.TargetType, &r.TargetID, &r.SubjectID, &r.Outcome, &r.RequestID, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			return v, fmt.Errorf("read audit event: %w", err)
		}
		v.Events++
		if r.Seq != last+1 {
			return fail(LayerChain, last+1, "%s (the next stored event is %d)", missing(last+1, r.Seq-1), r.Seq)
		}
		if problem := link(prev, &r); problem != "" {
			return fail(LayerChain, r.Seq, "%s", problem)
		}
		if cp, ok := cps[r.Seq]; ok {
			if !bytes.Equal(cp.hash, r.Hash) {
				return fail(LayerSignature, r.Seq, "differs from the signed checkpoint at this position")
			}
			v.Checkpoints++
		}
		if r.Seq == anchored.Head.Seq {
			atAnchor = r.Hash
		}
		if r.Seq == restoredAt {
			atRestore = r.Hash
		}
		if strings.Contains(r.Details, `"subjects":`) {
			var d struct{ Subjects []string }
			if err := json.Unmarshal([]byte(r.Details), &d); err != nil {
				return fail(LayerChain, r.Seq, "its details are not JSON")
			}
			for _, id := range d.Subjects {
				named = append(named, namedSubject{r.Seq, id})
			}
		}
		prev, last = r.Hash, r.Seq
	}
	if err := rows.Err(); err != nil {
		return v, fmt.Errorf("read audit events: %w", err)
	}
	rows.Close()
	if seq, err := checkNamed(ctx, q, tenantID, named); err != nil {
		return v, err
	} else if seq != 0 {
		return fail(LayerChain, seq, "the index of the people this event names differs from the event (a row was removed, added or changed)")
	}
	for seq, cp := range cps {
		if !signedBy(checkpointMessage(tenantID, seq, cp.hash, cp.at), cp.signature) {
			return fail(LayerSignature, seq, "the checkpoint's signature does not verify with the tenant's audit key")
		}
		if seq > last {
			return fail(LayerSignature, last+1, "%s: a signed checkpoint is at %d (truncated)", missing(last+1, seq), seq)
		}
	}

	// The signed head must cover the last event.
	var h signedHead
	err = q.QueryRow(ctx, "SELECT seq, hash, signed_at, signature FROM audit_heads WHERE tenant_id = ?", tenantID).Scan(&h.seq, &h.hash, &h.at, &h.signature)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if last != 0 {
			return fail(LayerSignature, last, "the chain's signed head is missing")
		}
	case err != nil:
		return v, fmt.Errorf("read audit head: %w", err)
	default:
		if seq, problem := h.covers(tenantID, last, prev, signedBy); problem != "" {
			return fail(LayerSignature, seq, "%s", problem)
		}
	}

	// The chain must reach the anchored head, and agree with it.
	a := anchored.Head
	v.Anchored = a.Seq
	switch {
	case l.anchor == nil:
		return fail(LayerAnchor, last, "no audit anchor is configured")
	case !haveAnchor && last > 0:
		return fail(LayerAnchor, last, "the audit anchor (%s) holds no head for this tenant: it was removed, or written elsewhere", l.anchor.Location())
	case !haveAnchor:
	case !signedBy(checkpointMessage(tenantID, a.Seq, a.Hash, a.At), a.Signature):
		return fail(LayerAnchor, a.Seq, "the anchored head's signature does not verify with the tenant's audit key")
	case a.Seq > last:
		return fail(LayerAnchor, last+1, "%s: the anchor holds a signed head at event %d (the database was rolled back or truncated)",
			missing(last+1, a.Seq), a.Seq)
	case !bytes.Equal(atAnchor, a.Hash):
		return fail(LayerAnchor, a.Seq, "event %d differs from the head anchored at that position (rewritten)", a.Seq)
	case restore.At > 0 && restoredAt > 0 && !bytes.Equal(atRestore, restore.Hash):
		return fail(LayerAnchor, restoredAt, "event %d differs from the backup's head a restore went on from (rewritten)", restoredAt)
	}
	if restore.At > 0 {
		v.Restored = fmt.Sprintf("restored from a backup ending at event %d", restoredAt)
		if restore.To > 0 {
			v.Restored += fmt.Sprintf("; anchored events %d to %d were lost", restore.From, restore.To)
		}
	}
	v.OK = true
	v.Head = fmt.Sprintf("%x", prev)
	return v, nil
}

// namedSubject is one person an event names (Event.Subjects).
type namedSubject struct {
	seq int64
	id  string
}

// checkNamed compares the index of the people events name with what the
// chained details say, named (in seq order, ids sorted as recorded); it
// answers the position of the first event where they differ, or 0.
func checkNamed(ctx context.Context, q sqldb.Q, tenantID string, named []namedSubject) (int64, error) {
	rows, err := q.Query(ctx, "SELECT seq, subject_id FROM audit_event_subjects WHERE tenant_id = ?", tenantID)
	if err != nil {
		return 0, fmt.Errorf("read the audit subject index: %w", err)
	}
	defer rows.Close()
	var index []namedSubject
	for rows.Next() {
		var n namedSubject
		if err := rows.Scan(&n.seq, &n.id); err != nil {
			return 0, err
		}
		index = append(index, n)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	order := func(a, b namedSubject) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.id, b.id)) }
	slices.SortFunc(index, order) // byte order, as Go sorted them, whatever the database's collation
	for i := range max(len(index), len(named)) {
		switch {
		case i == len(index):
			return named[i].seq, nil
		case i == len(named):
			return index[i].seq, nil
		case index[i] != named[i]:
			return min(index[i].seq, named[i].seq), nil
		}
	}
	return 0, nil
}

// link checks that r follows the event whose hash is prev and that its
// content matches its hash; it answers what is wrong, or "".
func link(prev []byte, r *record) string {
	switch {
	case !bytes.Equal(r.PrevHash, prev):
		return "does not follow the event before it (removed, reordered or altered)"
	case !bytes.Equal(r.hash(), r.Hash):
		return "content does not match its hash (altered)"
	}
	return ""
}

// signedHead is a tenant's chain head as stored.
type signedHead struct {
	seq, at   int64
	hash      []byte
	signature []byte
}

// covers checks that h is the head of a chain of last events ending with
// the hash prev, signed by a trusted key; it answers the first event in
// doubt and what is wrong, or "".
func (h signedHead) covers(tenantID string, last int64, prev []byte, signedBy func(msg, sig []byte) bool) (int64, string) {
	switch {
	case h.seq != last:
		return min(h.seq, last) + 1, fmt.Sprintf("the chain head says %d events, %d found (truncated or rewritten)", h.seq, last)
	case last > 0 && !bytes.Equal(h.hash, prev):
		return last, "the last event differs from the chain head"
	case last > 0 && len(h.signature) == 0:
		return last, "the chain head is not signed"
	case last > 0 && !signedBy(checkpointMessage(tenantID, h.seq, h.hash, h.at), h.signature):
		return last, "the chain head's signature does not verify with the tenant's audit key (re-signed or forged)"
	}
	return 0, ""
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

// AnchorUnanchored anchors the chain of every tenant that has events but
// no head in the anchor — on the first start with an anchor, or after the
// anchor's location was emptied — by appending an "audit.anchor.begin"
// event, whose signed head is anchored as usual. The event names how many
// events came before it unanchored, so the tenant's own trail says when
// its anchoring began. It answers the tenants it anchored.
func (l *Log) AnchorUnanchored(ctx context.Context) ([]string, error) {
	if l.anchor == nil {
		return nil, nil
	}
	anchored, err := l.anchor.Read(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := l.db.Read().Query(ctx, "SELECT tenant_id, seq FROM audit_heads WHERE seq > 0 ORDER BY tenant_id")
	if err != nil {
		return nil, fmt.Errorf("read audit heads: %w", err)
	}
	type unanchored struct {
		tenantID string
		seq      int64
	}
	var todo []unanchored
	for rows.Next() {
		var u unanchored
		if err := rows.Scan(&u.tenantID, &u.seq); err != nil {
			rows.Close()
			return nil, err
		}
		if _, ok := anchored[u.tenantID]; !ok {
			if _, ok := l.anchor.Known(u.tenantID); !ok {
				todo = append(todo, u)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var done []string
	for _, u := range todo {
		if err := l.Record(ctx, u.tenantID, Event{Action: "audit.anchor.begin", TargetType: "audit", TargetID: u.tenantID,
			Details: map[string]any{"unanchored_events": u.seq, "anchor": l.anchor.Location()}}); err != nil {
			return done, err
		}
		done = append(done, u.tenantID)
	}
	if len(done) > 0 {
		l.logger.Warn("audit chains anchored from the database's current heads: on a first start with an anchor this is expected; otherwise the anchor was emptied",
			"tenants", len(done), "anchor", l.anchor.Location())
	}
	return done, l.anchor.Flush(ctx)
}
