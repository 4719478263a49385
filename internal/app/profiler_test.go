package app

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	// Waiting is recorded while it is on: a receive blocked for 20 ms.
	ch := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(ch) })
	<-ch
	res, err = http.Get("http://" + addr + "/debug/pprof/block?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "app.TestProfiler") {
		t.Errorf("the block profile does not show the test's wait:\n%.2000s", b)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Errorf("the profiler answers after it stopped")
	}
}
