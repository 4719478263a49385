package keyring_test

import (
	"testing"

	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkField measures sealing and opening one personal field (a
// 24-byte email) under a subject key.
func BenchmarkField(b *testing.B) {
	db := sqldbtest.SQLite(b)
	kr := newKeyring(b)
	newTenant(b, db, kr, "t1")
	dk := newSubjectKey(b, db, kr, "t1", "s1")
	pt := []byte("jane.doe@example.org.uk")
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			_ = dk.Seal("subjects", "email_ct", "s1", pt)
		}
	})
	ct := dk.Seal("subjects", "email_ct", "s1", pt)
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			if _, err := dk.Open("subjects", "email_ct", "s1", ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}
