package ledger_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/ledger"
)

// A ledger reopened goes on from where it was; its copy in another
// directory reads the same; every way of altering it is found.
func TestLedger(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	l, err := ledger.Open(dir, "node-a", key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ledger.Entry{At: 1, Kind: "subject.erase", Tenant: "t1", Event: "e1", Target: "s1"},
		ledger.Entry{At: 2, Kind: "token.revoke", Tenant: "t1", Event: "e2", Target: "k1"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l, err = ledger.Open(dir, "node-a", key); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ledger.Entry{At: 3, Kind: "consent.withdraw", Tenant: "t1", Event: "e3", Target: "s2", Detail: map[string]string{"purpose": "news"}}); err != nil {
		t.Fatal(err)
	}
	copies := t.TempDir()
	if err := l.CopyTo(copies); err != nil {
		t.Fatal(err)
	}
	l.Close()
	es, err := ledger.Read([]ed25519.PublicKey{pub}, dir, copies)
	if err != nil || len(es) != 3 || es[2].Seq != 3 || es[2].Detail["purpose"] != "news" || es[0].Node != "node-a" {
		t.Fatalf("read back: %+v %v", es, err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := ledger.Read([]ed25519.PublicKey{other}, dir); err == nil || !strings.Contains(err.Error(), "not signed by a trusted key") {
		t.Errorf("read with another key: %v", err)
	}

	path := filepath.Join(copies, "node-a.jsonl")
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(strings.TrimSuffix(string(orig), "\n"), "\n")
	for name, altered := range map[string]string{
		"an entry removed":  lines[0] + lines[2],
		"entries reordered": lines[1] + lines[0] + lines[2],
		"an entry edited":   strings.Replace(string(orig), `"target":"s1"`, `"target":"s9"`, 1),
		"the last cut":      lines[0] + lines[1] + lines[2][:20],
	} {
		os.WriteFile(path, []byte(altered), 0o600)
		if _, err := ledger.Read([]ed25519.PublicKey{pub}, copies); err == nil {
			t.Errorf("%s: read without complaint", name)
		}
	}
	// The copies of one node disagree: refused.
	os.WriteFile(path, []byte(strings.Replace(string(orig), `"target":"s1"`, `"target":"s9"`, 1)), 0o600)
	if _, err := ledger.Read([]ed25519.PublicKey{pub}, dir, copies); err == nil {
		t.Errorf("a node's two copies that disagree: read without complaint")
	}
}

// The ledger follows the successful changes that take something away,
// with no detail but what a replay needs (never personal data).
func TestFollow(t *testing.T) {
	es := ledger.Follow([]audit.Committed{
		{TenantID: "t", ID: "e1", Action: "subject.read", Outcome: audit.Success, TargetID: "s1"},
		{TenantID: "t", ID: "e2", Action: "consent.withdraw", Outcome: audit.Success, TargetID: "s1", SubjectID: "s1", At: 5,
			Details: `{"purpose":"news","method":"email_link","ip":"198.51.100.7","note":"ann@example.org"}`},
		{TenantID: "t", ID: "e3", Action: "token.revoke", Outcome: "denied", TargetID: "k1"},
		{TenantID: "t", ID: "e4", Action: "subject.erase", Outcome: audit.Success, TargetID: "s2", SubjectID: "s2", Details: `{"reason":"api"}`},
		{TenantID: "t", ID: "e5", Action: "user.update", Outcome: audit.Success, TargetID: "u1", Details: `{"role":["admin","member"],"status":["active","active"]}`},
	})
	if len(es) != 3 || es[0].Event != "e2" || es[1].Event != "e4" || es[2].Event != "e5" {
		t.Fatalf("followed: %+v", es)
	}
	if d := es[2].Detail; len(d) != 2 || d["role_to"] != "member" || d["status_to"] != "active" {
		t.Errorf("a change's details: %+v", d)
	}
	if len(es[0].Detail) != 1 || es[0].Detail["purpose"] != "news" || es[1].Detail != nil {
		t.Errorf("details kept: %+v / %+v", es[0].Detail, es[1].Detail)
	}
}

// Each node keeps its own ledger; a restore reads them all, in the order
// the changes were made.
func TestNodesLedgers(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	for node, ats := range map[string][]int64{"node-a": {10, 30}, "node-b": {20}} {
		l, err := ledger.Open(dir, node, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range ats {
			if err := l.Append(ledger.Entry{At: at, Kind: "token.revoke", Tenant: "t", Event: node}); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
	es, err := ledger.Read([]ed25519.PublicKey{pub}, dir)
	if err != nil || len(es) != 3 || es[0].Node != "node-a" || es[1].Node != "node-b" || es[2].At != 30 {
		t.Fatalf("two nodes' ledgers: %+v %v", es, err)
	}
}

// Two writers of one node's ledger (two commands at once under one node
// name) take turns: the second waits for the first to close, then goes
// on from its last entry.
func TestOneWriterANode(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	first, err := ledger.Open(dir, "cli", key)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan *ledger.Ledger)
	go func() {
		second, err := ledger.Open(dir, "cli", key)
		if err != nil {
			t.Error(err)
		}
		opened <- second
	}()
	if err := first.Append(ledger.Entry{At: 1, Kind: "keys.rotate", Event: "e1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
		t.Fatal("a second writer opened the node's ledger while the first had it")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	second := <-opened
	if err := second.Append(ledger.Entry{At: 2, Kind: "keys.rotate", Event: "e2"}); err != nil {
		t.Fatal(err)
	}
	second.Close()
	if es, err := ledger.Read([]ed25519.PublicKey{pub}, dir); err != nil || len(es) != 2 || es[1].Seq != 2 {
		t.Fatalf("after two writers: %+v %v", es, err)
	}
	if _, err := ledger.Read(nil, dir); err == nil {
		t.Errorf("a ledger read without a key")
	}
}
