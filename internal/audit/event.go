// Package audit keeps each tenant's tamper-evident audit trail.
//
// Events are appended to a per-tenant SHA-256 hash chain (each event hashes
// the one before it) and signed ed25519 checkpoints are written at intervals.
// Verify recomputes the chain and names the first event that was altered,
// removed or moved.
//
// The actor's identity, IP address and user agent are personal data: they
// are sealed under the actor's own subject key, so the chain (which hashes
// the ciphertext) still verifies after that person is erased, while the
// identity becomes "erased subject #id".
//
// Writes go through Log.Commit, which runs a request's own database changes
// and its audit events in one transaction, batched with other concurrent
// requests (group commit): one fsync for many requests, and no request is
// answered before its events are durable.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/custodia/custodia/internal/keyring"
)

// Outcomes of an audited action.
const (
	Success = "success"
	Failure = "failure"
	Denied  = "denied"
)

// Actor types.
const (
	ActorUser     = "user"
	ActorToken    = "token"
	ActorOperator = "operator"
	ActorSystem   = "system"
	ActorSubject  = "subject" // a data subject acting through a link mailed to them
)

// Actor is who acts. Display, IP and UserAgent are personal data and are
// stored only sealed under Key (the actor's subject key); with no Key they
// are not stored at all.
type Actor struct {
	Type      string
	ID        string // user, token, operator or subject id
	SubjectID string // the actor's data subject, if a person
	Display   string
	IP        string
	UserAgent string
	Key       *keyring.DataKey
}

// Event is what a caller records. Details must never hold personal data
// values: name fields, not their contents.
type Event struct {
	Action     string
	TargetType string
	TargetID   string
	SubjectID  string
	Outcome    string // Success when empty
	Details    map[string]any
	// Subjects are the other people the event concerns: each contact a
	// list page showed. They are chained in the details ("subjects") and
	// indexed, so that a person's events (Filter.SubjectID) include it.
	Subjects []string
}

type ctxKey int

const (
	actorKey ctxKey = iota
	requestKey
)

// WithActor returns ctx carrying the acting principal.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey, a)
}

// ActorFrom returns the actor in ctx, or the system actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey).(Actor); ok {
		return a
	}
	return Actor{Type: ActorSystem, ID: "system"}
}

// WithRequestID returns ctx carrying the request id recorded with events.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestKey, id)
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestKey).(string)
	return id
}

// record is one stored event.
type record struct {
	TenantID       string
	Seq            int64
	ID             string
	At             int64
	ActorType      string
	ActorID        string
	ActorSubjectID string
	ActorCT        []byte
	Action         string
	TargetType     string
	TargetID       string
	SubjectID      string
	Outcome        string
	RequestID      string
	Details        string
	PrevHash       []byte
	Hash           []byte

	details  map[string]any // encoded into Details when the record is appended
	subjects []string       // Event.Subjects, sorted and unique
}

// actorSecret is what actor_ct holds.
type actorSecret struct {
	Display   string `json:"display,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// hash is the chain hash of r: SHA-256 over a length-prefixed encoding of
// every stored field and the previous hash.
func (r *record) hash() []byte {
	h := sha256.New()
	str := func(s string) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		h.Write([]byte(s))
	}
	num := func(n int64) { h.Write(binary.BigEndian.AppendUint64(nil, uint64(n))) }
	str("custodia/v1 audit event")
	str(r.TenantID)
	num(r.Seq)
	str(r.ID)
	num(r.At)
	str(r.ActorType)
	str(r.ActorID)
	str(r.ActorSubjectID)
	str(string(r.ActorCT))
	str(r.Action)
	str(r.TargetType)
	str(r.TargetID)
	str(r.SubjectID)
	str(r.Outcome)
	str(r.RequestID)
	str(r.Details)
	str(string(r.PrevHash))
	return h.Sum(nil)
}

// genesis is the "previous hash" of a tenant's first event.
func genesis(tenantID string) []byte {
	h := sha256.Sum256([]byte("custodia/v1 audit genesis\x00" + tenantID))
	return h[:]
}

// encodeDetails sets Details from the event's map, as it is now.
func (r *record) encodeDetails() error {
	if len(r.details) == 0 {
		return nil
	}
	b, err := json.Marshal(r.details)
	if err != nil {
		return fmt.Errorf("audit event %s: %w", r.Action, err)
	}
	r.Details = string(b)
	return nil
}

// newRecord fills everything but seq, hashes and the encoded details.
func newRecord(tenantID, id string, at time.Time, a Actor, requestID string, e Event) (record, error) {
	r := record{
		TenantID: tenantID, ID: id, At: at.UnixMicro(),
		ActorType: a.Type, ActorID: a.ID, ActorSubjectID: a.SubjectID,
		Action: e.Action, TargetType: e.TargetType, TargetID: e.TargetID, SubjectID: e.SubjectID,
		Outcome: e.Outcome, RequestID: requestID, Details: "{}",
	}
	if r.Outcome == "" {
		r.Outcome = Success
	}
	r.details = e.Details
	if len(e.Subjects) > 0 {
		r.subjects = slices.Compact(slices.Sorted(slices.Values(e.Subjects)))
		r.details = maps.Clone(e.Details)
		if r.details == nil {
			r.details = map[string]any{}
		}
		r.details["subjects"] = r.subjects
	}
	if a.Key != nil {
		b, err := json.Marshal(actorSecret{Display: a.Display, IP: a.IP, UserAgent: a.UserAgent})
		if err != nil {
			return r, err
		}
		r.ActorCT = a.Key.Seal("audit_events", "actor_ct", id, b)
	}
	return r, nil
}
