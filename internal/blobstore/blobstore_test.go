package blobstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/blobstore/blobtest"
	"github.com/custodia/custodia/internal/errs"
)

// TestConformance runs one suite against every kind of region: a local
// directory and a real S3-compatible server (versitygw, built
// by scripts/test.sh into the user cache directory).
func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "regions", "eu-west")
		s := open(t, "file://"+dir)
		conformance(t, s)
		// Temporary files stay inside the region and none is left over.
		var stray []string
		filepath.WalkDir(filepath.Dir(dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(filepath.Base(p), ".tmp") {
				stray = append(stray, p)
			}
			return nil
		})
		if len(stray) > 0 {
			t.Errorf("temporary files left: %v", stray)
		}
	})
	t.Run("s3", func(t *testing.T) {
		conformance(t, open(t, blobtest.StartS3(t)))
	})
}

func open(t *testing.T, url string) *blobstore.Store {
	t.Helper()
	s, err := blobstore.Open(context.Background(), "test", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pattern is a reader of n deterministic bytes, made on the fly.
type pattern struct{ n, off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off)
	for i := range k {
		b[i] = byte((p.off + i) * 31 % 251)
	}
	p.off += k
	return int(k), nil
}

// failing reads n bytes of pattern, then fails.
type failing struct{ pattern }

func (f *failing) Read(b []byte) (int, error) {
	n, err := f.pattern.Read(b)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

var errBroken = errors.New("the client went away")

func read(t *testing.T, s *blobstore.Store, key string, off, n int64) []byte {
	t.Helper()
	r, err := s.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys(t *testing.T, s *blobstore.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(o blobstore.Object) error {
		out = append(out, fmt.Sprintf("%s:%d", o.Key, o.Size))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func conformance(t *testing.T, s *blobstore.Store) {
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Round trip, size, overwrite, ranges.
	if n, err := s.Put(ctx, "t1/a", strings.NewReader("hello, world")); err != nil || n != 12 {
		t.Fatalf("put: %d %v", n, err)
	}
	if got := string(read(t, s, "t1/a", 0, -1)); got != "hello, world" {
		t.Fatalf("read back %q", got)
	}
	if _, err := s.Put(ctx, "t1/a", strings.NewReader("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(ctx, "t1/a"); err != nil || n != 16 {
		t.Errorf("size after overwrite: %d %v", n, err)
	}
	for _, c := range []struct {
		off, n int64
		want   string
	}{{0, 4, "0123"}, {10, 3, "abc"}, {12, -1, "cdef"}, {15, 10, "f"}} {
		if got := string(read(t, s, "t1/a", c.off, c.n)); got != c.want {
			t.Errorf("range %d+%d: %q; want %q", c.off, c.n, got, c.want)
		}
	}
	// Missing objects.
	if _, err := s.Get(ctx, "t1/none", 0, -1); !errs.Is(err, errs.NotFound) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := s.Size(ctx, "t1/none"); !errs.Is(err, errs.NotFound) {
		t.Errorf("size missing: %v", err)
	}
	if err := s.Delete(ctx, "t1/none"); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	// A large object streams in and out (never whole in memory here).
	const big = 24 << 20
	if n, err := s.Put(ctx, "t1/big", &pattern{n: big}); err != nil || n != big {
		t.Fatalf("put big: %d %v", n, err)
	}
	r, err := s.Get(ctx, "t1/big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h, want := sha256.New(), sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	io.Copy(want, &pattern{n: big})
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Error("the big object reads back different")
	}
	// A failed or cancelled upload leaves nothing — and a replaced object intact.
	if _, err := s.Put(ctx, "t1/broken", &failing{pattern{n: 3 << 20}}); !errors.Is(err, errBroken) {
		t.Errorf("an upload whose reader failed: %v, want the reader's error", err)
	}
	if _, err := s.Size(ctx, "t1/broken"); !errs.Is(err, errs.NotFound) {
		t.Errorf("a failed upload left an object: %v", err)
	}
	if _, err := s.Put(ctx, "t1/a", &failing{pattern{n: 1 << 20}}); err == nil {
		t.Error("a failing overwrite succeeded")
	}
	if got := string(read(t, s, "t1/a", 0, -1)); got != "0123456789abcdef" {
		t.Errorf("a failed overwrite changed the object: %d bytes, %.20q…", len(got), got)
	}
	cctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, 1<<20))
		cancel()
		pw.CloseWithError(context.Canceled)
	}()
	if _, err := s.Put(cctx, "t1/cancelled", pr); err == nil {
		t.Error("a cancelled upload succeeded")
	}
	if _, err := s.Size(ctx, "t1/cancelled"); !errs.Is(err, errs.NotFound) {
		t.Errorf("a cancelled upload left an object: %v", err)
	}
	// Listing by prefix, in key order.
	for _, k := range []string{"t2/b", "t2/a", "t2/c/d", "t3/x", "t2/é ü"} {
		if _, err := s.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	if got := strings.Join(keys(t, s, "t2/"), " "); got != "t2/a:4 t2/b:4 t2/c/d:6 t2/é ü:8" {
		t.Errorf("list t2/: %s", got)
	}
	if err := s.Delete(ctx, "t2/b"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(t, s, "t2/"), " "); got != "t2/a:4 t2/c/d:6 t2/é ü:8" {
		t.Errorf("list after delete: %s", got)
	}
	// Keys that are not plain relative paths are refused before any I/O.
	for _, k := range []string{"", "/abs", "a/../b", "../up", "a//b", "a/./b", `a\b`, "nul\x00", "dir/", strings.Repeat("k", 513)} {
		if _, err := s.Put(ctx, k, strings.NewReader("x")); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

// TestRegionDown: a region that cannot be reached answers 503, and an
// upload to it leaves nothing.
func TestRegionDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testsecret123")
	s := open(t, "s3://down?endpoint=http://"+addr+"&region=us-east-1&use_path_style=true")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Ping(ctx); !errs.Is(err, errs.Unavailable) {
		t.Errorf("ping: %v", err)
	}
	if _, err := s.Put(ctx, "a", strings.NewReader("x")); !errs.Is(err, errs.Unavailable) {
		t.Errorf("put: %v", err)
	}
}
