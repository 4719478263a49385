package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// A client speaks the protocol asked for, on connections of its own: two
// clients never share one.
func TestClientsHaveTheirOwnConnections(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // remote address → protocol
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.RemoteAddr] = r.Proto
		mu.Unlock()
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	for _, c := range []struct {
		http2 bool
		want  string
	}{{false, "HTTP/1.1"}, {true, "HTTP/2.0"}} {
		clear(seen)
		for range 2 {
			cl := newClient(config{http2: c.http2})
			for range 3 {
				res, err := cl.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
			}
			cl.CloseIdleConnections()
		}
		if len(seen) != 2 {
			t.Errorf("http2=%v: two clients, three requests each, came over %d connections; want 2", c.http2, len(seen))
		}
		for addr, proto := range seen {
			if proto != c.want {
				t.Errorf("http2=%v: %s spoke %s; want %s", c.http2, addr, proto, c.want)
			}
		}
	}
}
