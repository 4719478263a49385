// Command testonly asks for Custodia's test-only options (no fsync on
// SQLite, cheap password hashes) from a program that is not a test binary,
// and prints what each answered: both must be refused.
// TestTestOptionsOnlyInTests builds and runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/sqldb"
)

func main() {
	dir, err := os.MkdirTemp("", "custodia-testonly-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqldb.OpenWith(context.Background(), "", dir, sqldb.TestOptions{NoSync: true})
	if err == nil {
		db.Close()
	}
	fmt.Printf("sqldb NoSync: %v\n", err)
	_, err = password.NewTestHasher(1, time.Second)
	fmt.Printf("password NewTestHasher: %v\n", err)
}
