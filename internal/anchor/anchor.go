// Package anchor keeps, outside the database, what must survive someone
// who can write the database or roll it back: per tenant, the public keys
// its audit chain is signed with and the latest signed head of that chain,
// with a short history.
//
// The anchor lives where the operator says (a gocloud.dev/blob URL; by
// default a directory beside the database in the data dir), so several
// nodes on one PostgreSQL can share it. Each node keeps its own object,
// named after the node, and replaces it whole: on a local directory by
// writing a temporary file, syncing it, renaming it over the old one and
// syncing the directory; elsewhere by a single PUT. Readers merge every
// node's object and take, per tenant, the highest head.
//
// The anchor holds what it is given: the audit log signs heads and checks
// them (this package never trusts or verifies anything itself). Its size
// grows with the number of tenants, never with the number of events.
package anchor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Format names the object's format; a reader refuses any other.
const Format = "custodia/v1 audit anchor"

// historyLen is how many earlier heads a tenant's entry keeps.
const historyLen = 8

// Head is a signed head of a tenant's audit chain: the last event's
// position and hash, when it was signed, with which key, and the
// signature.
type Head struct {
	Seq       int64  `json:"seq"`
	Hash      []byte `json:"hash"`
	At        int64  `json:"at"` // unix µs, part of the signed message
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// Mark is a signed record that explains a gap in a chain — kinds "pruned"
// (events From–To removed by audit retention, reserved) and "restored"
// (the database was restored from a backup whose chain ended at From-1
// with Hash; the events From–To anchored since are lost, To is 0 when no
// anchored head survived). The audit log honours only marks whose
// signature verifies, so neither can become a way to forge a gap.
type Mark struct {
	Kind      string `json:"kind"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	Hash      []byte `json:"hash"` // the hash the chain goes on from
	At        int64  `json:"at"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// Tenant is what the anchor knows of one tenant.
type Tenant struct {
	Keys    [][]byte `json:"keys"` // every audit public key its heads were signed with, oldest first
	Head    Head     `json:"head"`
	History []Head   `json:"history,omitempty"` // earlier heads, newest first
	Marks   []Mark   `json:"marks,omitempty"`
}

// object is one node's anchor object.
type object struct {
	Format    string             `json:"format"`
	Node      string             `json:"node"`
	WrittenAt time.Time          `json:"written_at"`
	Tenants   map[string]*Tenant `json:"tenants"`
}

// Anchor is this node's anchor: what it noted, written to its object at
// least every second (or at every Note when synchronous) and at Close.
type Anchor struct {
	store  Store
	node   string
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	tenants map[string]*Tenant
	dirty   bool
	werr    error // the last write's failure, until a write succeeds

	writeMu sync.Mutex // one write at a time
	stop    chan struct{}
	done    chan struct{}
}

// Options tune an Anchor.
type Options struct {
	// Every is how often what changed is written by the anchor itself
	// (default 1 s); Manual leaves it to the caller's Flush (a server runs
	// it as a job, a command flushes at Close).
	Every  time.Duration
	Manual bool
	Logger *slog.Logger
	Now    func() time.Time
}

// Open opens the anchor at rawURL as node: it loads what this node wrote
// before (so a restart never forgets) and starts writing every opt.Every.
func Open(ctx context.Context, rawURL, node string, opt Options) (*Anchor, error) {
	st, err := OpenStore(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if opt.Every <= 0 {
		opt.Every = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	a := &Anchor{store: st, node: node, logger: opt.Logger, now: opt.Now,
		tenants: map[string]*Tenant{}, stop: make(chan struct{}), done: make(chan struct{})}
	objs, err := st.List(ctx)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read the audit anchor: %w", err)
	}
	if b, ok := objs[node]; ok {
		o, err := decode(b)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("audit anchor of node %s: %w", node, err)
		}
		a.tenants = o.Tenants
	}
	if opt.Manual {
		close(a.done)
	} else {
		go a.loop(opt.Every)
	}
	return a, nil
}

// Note records h as tenantID's latest head and its key as one of the
// tenant's keys, to be written with the next Flush. A head is never
// replaced by one at or before it: the anchor only moves forward, so a
// database rolled back cannot pull it back.
func (a *Anchor) Note(tenantID string, h Head) {
	a.mu.Lock()
	a.noteLocked(tenantID, h)
	a.mu.Unlock()
}

// noteLocked is Note with a.mu held. A head without a key (or a key
// without a head: Seq 0) records only what it has.
func (a *Anchor) noteLocked(tenantID string, h Head) {
	t := a.tenants[tenantID]
	if t == nil {
		t = &Tenant{}
		a.tenants[tenantID] = t
	}
	if len(h.Key) > 0 && !slices.ContainsFunc(t.Keys, func(k []byte) bool { return bytes.Equal(k, h.Key) }) {
		t.Keys = append(t.Keys, h.Key)
		a.dirty = true
	}
	if h.Seq > t.Head.Seq && !superseded(h, t.Marks) {
		if t.Head.Seq > 0 {
			t.History = append([]Head{t.Head}, t.History...)
			t.History = t.History[:min(len(t.History), historyLen)]
		}
		t.Head = h
		a.dirty = true
	}
}

// Restored is the kind of mark a restore writes.
const Restored = "restored"

// Restart records that tenantID's chain was restored to base, with the
// signed mark m saying what was lost: the one case where a tenant's head
// moves back. Heads signed before the mark at or after its first lost
// event are superseded — here and in every node's object — so the chain
// goes on from base.
func (a *Anchor) Restart(tenantID string, m Mark, base Head) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tenants[tenantID]
	if t == nil {
		t = &Tenant{}
		a.tenants[tenantID] = t
	}
	if t.Head.Seq > 0 {
		t.History = append([]Head{t.Head}, t.History...)
		t.History = t.History[:min(len(t.History), historyLen)]
	}
	t.Head = Head{}
	t.Marks = append(t.Marks, m)
	a.noteLocked(tenantID, base)
	a.dirty = true
}

// superseded reports whether a restore mark among marks makes h a head of
// events that were lost: signed before the mark, at or after its first
// lost event.
func superseded(h Head, marks []Mark) bool {
	return slices.ContainsFunc(marks, func(m Mark) bool { return m.Kind == Restored && h.At < m.At && h.Seq >= m.From })
}

// addMarks adds to t the marks it does not hold yet.
func addMarks(t *Tenant, marks []Mark) bool {
	added := false
	for _, m := range marks {
		if !slices.ContainsFunc(t.Marks, func(x Mark) bool { return bytes.Equal(x.Signature, m.Signature) }) {
			t.Marks = append(t.Marks, m)
			added = true
		}
	}
	return added
}

// Known reports what this node has noted of tenantID.
func (a *Anchor) Known(tenantID string) (Tenant, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tenants[tenantID]
	if !ok {
		return Tenant{}, false
	}
	return clone(t), true
}

// Flush writes this node's object now when something changed since the
// last write.
func (a *Anchor) Flush(ctx context.Context) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.Lock()
	if !a.dirty {
		err := a.werr
		a.mu.Unlock()
		return err
	}
	a.mu.Unlock()
	// Another process under the same node name (two commands at once) may
	// have written since: keep what it anchored, never write it away.
	if b, err := a.store.Get(ctx, a.node); err == nil && b != nil {
		if theirs, err := decode(b); err == nil {
			a.mu.Lock()
			for id, t := range theirs.Tenants {
				if len(t.Marks) > 0 {
					if a.tenants[id] == nil {
						a.tenants[id] = &Tenant{}
					}
					addMarks(a.tenants[id], t.Marks)
				}
				for _, k := range t.Keys {
					a.noteLocked(id, Head{Key: k})
				}
				a.noteLocked(id, t.Head)
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	o := object{Format: Format, Node: a.node, WrittenAt: a.now().UTC(), Tenants: make(map[string]*Tenant, len(a.tenants))}
	for id, t := range a.tenants {
		c := clone(t)
		o.Tenants[id] = &c
	}
	a.dirty = false
	a.mu.Unlock()
	b, err := json.Marshal(o)
	if err == nil {
		err = a.store.Put(ctx, a.node, b)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.dirty = true // written again next time
		a.werr = fmt.Errorf("write the audit anchor: %w", err)
		return a.werr
	}
	a.werr = nil
	return nil
}

func (a *Anchor) loop(every time.Duration) {
	defer close(a.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			if err := a.Flush(context.Background()); err != nil {
				a.logger.Error("audit anchor not written; retrying", "err", err.Error())
			}
		}
	}
}

// Close writes what is not written yet and stops.
func (a *Anchor) Close() error {
	close(a.stop)
	<-a.done
	err := a.Flush(context.Background())
	return errors.Join(err, a.store.Close())
}

// Read merges every node's object at the anchor's location: per tenant,
// the highest head (and the keys of all).
func (a *Anchor) Read(ctx context.Context) (map[string]Tenant, error) {
	objs, err := a.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the audit anchor: %w", err)
	}
	out := map[string]Tenant{}
	var all []object
	for node, b := range objs {
		o, err := decode(b)
		if err != nil {
			return nil, fmt.Errorf("audit anchor of node %s: %w", node, err)
		}
		all = append(all, o)
		for id, t := range o.Tenants { // every node's marks first: they decide which heads count
			m := out[id]
			addMarks(&m, t.Marks)
			out[id] = m
		}
	}
	for _, o := range all {
		for id, t := range o.Tenants {
			m := out[id]
			for _, k := range t.Keys {
				if !slices.ContainsFunc(m.Keys, func(x []byte) bool { return bytes.Equal(x, k) }) {
					m.Keys = append(m.Keys, k)
				}
			}
			if t.Head.Seq > m.Head.Seq && !superseded(t.Head, m.Marks) {
				m.Head, m.History = t.Head, t.History
			}
			out[id] = m
		}
	}
	return out, nil
}

// Location describes where the anchor is, without credentials.
func (a *Anchor) Location() string { return a.store.Location() }

func decode(b []byte) (object, error) {
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return o, err
	}
	if o.Format != Format {
		return o, fmt.Errorf("format %q; want %q", o.Format, Format)
	}
	if o.Tenants == nil {
		o.Tenants = map[string]*Tenant{}
	}
	return o, nil
}

func clone(t *Tenant) Tenant {
	return Tenant{Keys: slices.Clone(t.Keys), Head: t.Head, History: slices.Clone(t.History), Marks: slices.Clone(t.Marks)}
}
