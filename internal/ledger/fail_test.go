package ledger

import (
	"crypto/ed25519"
	"os"
	"testing"
)

// A write that fails leaves no half entry, and the entries it could not
// write go first with the next (or Flush): nothing acknowledged before is
// lost, nothing after it is out of order.
func TestFailedWriteIsKept(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	l, err := Open(dir, "n", key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Entry{At: 1, Kind: "subject.erase", Event: "e1"}); err != nil {
		t.Fatal(err)
	}
	l.f.Close() // the disk goes away
	if err := l.Append(Entry{At: 2, Kind: "token.revoke", Event: "e2"}); err == nil {
		t.Fatal("an append to a closed file succeeded")
	}
	if l.f, err = os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0o600); err != nil { // and comes back
		t.Fatal(err)
	}
	if err := l.Append(Entry{At: 3, Kind: "consent.withdraw", Event: "e3"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	es, err := readFile(l.path, pub)
	if err != nil || len(es) != 3 || es[1].Event != "e2" || es[2].Event != "e3" {
		t.Fatalf("after the failure: %+v %v", es, err)
	}
}
