package app

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/core"
)

// The profiler answers on its loopback listener, apart from the API, and
// stops.
func TestProfiler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := &App{Core: &core.Core{Logger: slog.New(slog.DiscardHandler)}}
	stop, err := a.profiler(addr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile") {
		t.Errorf("the profiler: %d %.200s", res.StatusCode, b)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Errorf("the profiler answers after it stopped")
	}
}
