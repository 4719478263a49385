package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// A short run against a real server (in process, over HTTPS): the
// contacts are seeded, every operation is done without an error, and the
// table has a row per operation and number of clients.
func TestLoad(t *testing.T) {
	env := apptest.New(t, "")
	var out, log bytes.Buffer
	ops := "create,read,lookup,consent,export,upload-64KiB,download-64KiB,erase"
	err := run([]string{"-url", env.Server.URL, "-token", env.Token, "-seed", "300", "-clients", "1,2", "-duration", "150ms",
		"-big=false", "-ops", ops}, &out, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2+2*8 {
		t.Fatalf("the table:\n%s", out.String())
	}
	for _, line := range lines[2:] {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 9 || cells[2] == "0" || cells[7] != "0" {
			t.Errorf("a row with nothing done or errors: %s\n%s", line, log.String())
		}
	}
	if err := run([]string{"-ops", "dance", "-token", "x"}, &out, &log); err == nil || !strings.Contains(err.Error(), "dance") {
		t.Errorf("an unknown operation: %v", err)
	}
}
