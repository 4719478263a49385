package audit_test

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
)

// FuzzSafeCell: whatever a cell holds, written to CSV and read back it
// does not begin with a character a spreadsheet takes for a formula, it
// keeps the whole text, and neutralising twice changes nothing more.
func FuzzSafeCell(f *testing.F) {
	for _, s := range []string{"=SUM(A1)", "+1", "-1", "@cmd", "\tx", "\rx", "plain", "", "'=already", "\"=q\"", "a,b", "=1\n=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		safe := audit.SafeCell(s)
		if safe != s && safe != "'"+s {
			t.Fatalf("SafeCell(%q) = %q: neither the text nor the text quoted", s, safe)
		}
		if audit.SafeCell(safe) != safe {
			t.Fatalf("SafeCell is not idempotent on %q", s)
		}
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		w.Write([]string{safe, "next"})
		w.Flush()
		rec, err := csv.NewReader(&b).Read()
		if err != nil || len(rec) != 2 {
			return // a cell encoding/csv cannot round-trip (a lone \r); the writer is not ours
		}
		if c := rec[0]; c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			t.Fatalf("%q reads back as %q, a formula", s, c)
		}
	})
}
