// Package ledger keeps, outside the database, a record of every change
// that takes something away — an erasure, a consent withdrawn, a token or
// session revoked, a password or sign-in address changed, a second factor
// removed, an account closed — so that a restore from an older backup can
// replay them before the server serves (docs/decisions/0026-ledger.md).
//
// Each node appends to a file of its own (one JSON entry a line), fsynced
// before the change is acknowledged. An entry holds random ids, a time,
// the kind of change and, where a replay needs it, a purpose's key —
// never personal data. Entries are chained (each names the hash of the
// one before) and signed with the backup manifest key, which is kept
// outside the database: deleting, reordering or editing an entry is
// detected. The file is copied to the backup location every minute and
// before each backup completes; a restore reads every node's file.
package ledger

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/custodia/custodia/internal/anchor"
)

// Format names the entries' format; it is part of what is signed.
const Format = "custodia/v1 ledger"

// Entry is one change that took something away.
type Entry struct {
	Seq     int64             `json:"seq"`
	Prev    string            `json:"prev"` // the hash of the entry before, hex; "" for the first
	Node    string            `json:"node"`
	At      int64             `json:"at"`     // unix µs of the change
	Kind    string            `json:"kind"`   // the audit action: subject.erase, consent.withdraw, token.revoke…
	Tenant  string            `json:"tenant"` // ids, never names
	Event   string            `json:"event"`  // the change's audit event
	Target  string            `json:"target"`
	Subject string            `json:"subject,omitempty"`
	Detail  map[string]string `json:"detail,omitempty"` // what a replay needs: a purpose's key, a role
	Hash    string            `json:"hash"`
	Sig     string            `json:"sig"`
}

// digest is the hash of e's content and place in the chain.
func (e Entry) digest() string {
	c := e
	c.Hash, c.Sig = "", ""
	b, _ := json.Marshal(c) // fields in a fixed order; a map's keys sorted
	sum := sha256.Sum256(append([]byte(Format+"\x00"), b...))
	return hex.EncodeToString(sum[:])
}

// Ledger is this node's ledger file, open for appending.
type Ledger struct {
	path string
	node string
	key  ed25519.PrivateKey

	mu      sync.Mutex
	f       *os.File
	size    int64 // the file's length after the last whole write
	seq     int64
	last    string
	pending []Entry // entries a failed write left: written first by the next
}

// file is a node's ledger file in dir.
func file(dir, node string) string { return filepath.Join(dir, node+".jsonl") }

// Open opens node's ledger in dir (made if missing), checking what it
// holds, to append entries signed with key.
func Open(dir, node string, key ed25519.PrivateKey) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &Ledger{path: file(dir, node), node: node, key: key}
	var err error
	if l.f, err = os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
		return nil, err
	}
	// One writer of a node's file at a time, across processes (two
	// commands run at once under one node name): the second waits. The
	// system drops the lock when a process dies.
	if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX); err != nil {
		l.f.Close()
		return nil, fmt.Errorf("lock the ledger: %w", err)
	}
	// The chain goes on from the last entry; signatures are not checked
	// here (entries an earlier signing key made stay valid), a restore
	// checks them all.
	es, err := readFile(l.path)
	if err != nil {
		l.f.Close()
		return nil, err
	}
	if n := len(es); n > 0 {
		l.seq, l.last = es[n-1].Seq, es[n-1].Hash
	}
	st, err := l.f.Stat()
	if err != nil {
		l.f.Close()
		return nil, err
	}
	l.size = st.Size()
	return l, nil
}

// Append chains, signs and appends es, and answers once they are on disk.
// When the disk fails, what was written of them is cut off again and they
// are kept, to be written before the next entries (or by Flush).
func (l *Ledger) Append(es ...Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	es = append(l.pending, es...)
	if len(es) == 0 {
		return nil
	}
	var b []byte
	seq, last := l.seq, l.last
	for _, e := range es {
		seq++
		e.Seq, e.Prev, e.Node = seq, last, l.node
		e.Hash = e.digest()
		e.Sig = hex.EncodeToString(ed25519.Sign(l.key, []byte(e.Hash)))
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
		last = e.Hash
	}
	_, err := l.f.Write(b)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		_ = l.f.Truncate(l.size) // no half entry stays to break the chain
		l.pending = es
		return fmt.Errorf("append to the ledger (%d entries kept to write again): %w", len(es), err)
	}
	l.seq, l.last, l.size, l.pending = seq, last, l.size+int64(len(b)), nil
	return nil
}

// Flush writes what a failed Append kept (the copy job calls it).
func (l *Ledger) Flush() error { return l.Append() }

// CopyTo copies this node's ledger into dir (the backup location's
// ledger directory), replacing the copy there at once.
func (l *Ledger) CopyTo(dir string) error {
	if err := l.Flush(); err != nil {
		return err
	}
	l.mu.Lock()
	b, err := os.ReadFile(l.path)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return anchor.WriteFileDurably(file(dir, l.node), b)
}

// Close closes the file.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// readFile reads and checks one node's ledger file: every entry chained
// to the one before, numbered without a gap, and — unless no key is given
// — signed by one of the trusted keys.
func readFile(path string, trusted ...ed25519.PublicKey) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prev := ""
	for n := 1; sc.Scan(); n++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("ledger %s, line %d: not an entry (altered or cut short)", filepath.Base(path), n)
		}
		sig, _ := hex.DecodeString(e.Sig)
		switch {
		case e.Seq != int64(n):
			return nil, fmt.Errorf("ledger %s: entry %d is missing (the next is %d): an entry was removed", filepath.Base(path), n, e.Seq)
		case e.Prev != prev || e.digest() != e.Hash:
			return nil, fmt.Errorf("ledger %s: entry %d does not follow the one before or was altered", filepath.Base(path), n)
		case len(trusted) > 0 && !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, []byte(e.Hash), sig) }):
			return nil, fmt.Errorf("ledger %s: entry %d is not signed by a trusted key", filepath.Base(path), n)
		}
		out = append(out, e)
		prev = e.Hash
	}
	return out, sc.Err()
}

// Read reads and checks every node's ledger in each of dirs (the data
// dir's and the backup location's: a node's newer copy wins), and
// answers the entries of all, each node's in order. A ledger that does
// not verify is an error: a restore stops on it.
func Read(trusted []ed25519.PublicKey, dirs ...string) ([]Entry, error) {
	if len(trusted) == 0 {
		return nil, errors.New("the ledger is read only with the keys that sign it")
	}
	byNode := map[string][]Entry{}
	for _, dir := range dirs {
		names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		if err != nil {
			return nil, err
		}
		for _, path := range names {
			es, err := readFile(path, trusted...)
			if err != nil {
				return nil, err
			}
			node := strings.TrimSuffix(filepath.Base(path), ".jsonl")
			if len(es) > len(byNode[node]) {
				if n := len(byNode[node]); n > 0 && es[n-1].Hash != byNode[node][n-1].Hash {
					return nil, fmt.Errorf("ledger of node %s: its copies disagree at entry %d", node, n)
				}
				byNode[node] = es
			}
		}
	}
	var out []Entry
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		out = append(out, byNode[node]...)
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return out, nil
}
