package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/blobstore/blobtest"
	"github.com/custodia/custodia/internal/errs"
)

// recorder is a disk that writes through the real one and notes each
// durability step, relative to the region's parent directory.
type recorder struct {
	blobstore.OSDisk
	base string
	ops  []string
	fail error // returned by Sync when set
}

func (r *recorder) rel(p string) string {
	rel, _ := filepath.Rel(r.base, p)
	if strings.HasPrefix(filepath.Base(rel), ".tmp-") {
		rel = filepath.Join(filepath.Dir(rel), ".tmp")
	}
	return filepath.ToSlash(rel)
}

func (r *recorder) Sync(f *os.File) error {
	r.ops = append(r.ops, "sync "+r.rel(f.Name()))
	if r.fail != nil {
		return r.fail
	}
	return r.OSDisk.Sync(f)
}

func (r *recorder) Rename(from, to string) error {
	r.ops = append(r.ops, "rename "+r.rel(from)+" "+r.rel(to))
	return r.OSDisk.Rename(from, to)
}

func (r *recorder) SyncDir(dir string) error {
	r.ops = append(r.ops, "syncdir "+r.rel(dir))
	return r.OSDisk.SyncDir(dir)
}

func (r *recorder) Mkdir(dir string) error {
	r.ops = append(r.ops, "mkdir "+r.rel(dir))
	return r.OSDisk.Mkdir(dir)
}

func (r *recorder) Remove(p string) error {
	r.ops = append(r.ops, "remove "+r.rel(p))
	return r.OSDisk.Remove(p)
}

// A local write answers only once the content, its name and every
// directory created for it are synced: what the database commit that
// follows announces survives a power cut. A failed sync leaves nothing.
func TestLocalWritesAreDurable(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	rec := &recorder{base: base}
	s, err := blobstore.OpenDirForTest(filepath.Join(base, "eu"), rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.ops = nil
	if _, err := s.Put(ctx, "t1/s1/blob", strings.NewReader("ciphertext")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"mkdir eu/t1", "mkdir eu/t1/s1",
		"sync eu/t1/s1/.tmp", "rename eu/t1/s1/.tmp eu/t1/s1/blob",
		"syncdir eu/t1/s1", "syncdir eu", "syncdir eu/t1",
	}
	if fmt.Sprint(rec.ops) != fmt.Sprint(want) {
		t.Errorf("durability steps:\n got %q\nwant %q", rec.ops, want)
	}

	// A second object in the same folder: no directory to create.
	rec.ops = nil
	if _, err := s.Put(ctx, "t1/s1/other", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync eu/t1/s1/.tmp", "rename eu/t1/s1/.tmp eu/t1/s1/other", "syncdir eu/t1/s1"}; fmt.Sprint(rec.ops) != fmt.Sprint(want) {
		t.Errorf("second write:\n got %q\nwant %q", rec.ops, want)
	}

	// A purge is durable too.
	rec.ops = nil
	if err := s.Delete(ctx, "t1/s1/other"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"remove eu/t1/s1/other", "syncdir eu/t1/s1"}; fmt.Sprint(rec.ops) != fmt.Sprint(want) {
		t.Errorf("delete:\n got %q\nwant %q", rec.ops, want)
	}

	// The disk refuses to sync: the write fails and nothing is left.
	rec.fail = errors.New("EIO")
	if _, err := s.Put(ctx, "t1/s1/lost", strings.NewReader("x")); err == nil {
		t.Fatal("a write whose sync failed succeeded")
	}
	entries, _ := os.ReadDir(filepath.Join(base, "eu", "t1", "s1"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[blob]" {
		t.Errorf("after a failed sync the folder holds %v", names)
	}
}

// Objects are 0600 and folders 0700 whatever the umask.
func TestLocalPermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "eu")
	s := open(t, "file://"+root)
	if _, err := s.Put(context.Background(), "t/s/f", bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		root: 0o700, filepath.Join(root, "t"): 0o700, filepath.Join(root, "t", "s"): 0o700, filepath.Join(root, "t", "s", "f"): 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}

// A full disk is its own kind (507), and leaves nothing behind.
func TestLocalDiskFull(t *testing.T) {
	base := t.TempDir()
	rec := &recorder{base: base, fail: &os.PathError{Op: "sync", Path: "x", Err: syscall.ENOSPC}}
	s, err := blobstore.OpenDirForTest(filepath.Join(base, "eu"), rec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "t/f", strings.NewReader("x"))
	if !errs.Is(err, errs.NoSpace) {
		t.Fatalf("a full disk answered %v (kind %v)", err, errs.KindOf(err))
	}
	if entries, _ := os.ReadDir(filepath.Join(base, "eu", "t")); len(entries) != 0 {
		t.Errorf("a write refused for space left %v", entries)
	}
}

// BenchmarkLocalPut4KiB is the cost of one small durable object: write,
// fsync, rename, fsync of its folder.
func BenchmarkLocalPut4KiB(b *testing.B) {
	s, err := blobstore.OpenDirForTest(filepath.Join(b.TempDir(), "eu"), blobstore.OSDisk{})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte{7}, 4096)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(ctx, fmt.Sprintf("t/s/%d", i), bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// Temporary files a crash left behind are swept once old; a write in
// progress (a young one) and the objects stay.
func TestSweepTemp(t *testing.T) {
	root := filepath.Join(t.TempDir(), "eu")
	s := open(t, "file://"+root)
	ctx := context.Background()
	if _, err := s.Put(ctx, "t/s/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(root, "t", "s", ".tmp-crashed")
	young := filepath.Join(root, "t", ".tmp-writing")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepTemp(ctx, 15*time.Minute); err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want the old one", n, err)
	}
	for p, want := range map[string]bool{old: false, young: true, filepath.Join(root, "t", "s", "kept"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	if n, err := open(t, blobtest.StartS3(t)).SweepTemp(ctx, 0); err != nil || n != 0 {
		t.Errorf("a bucket: %d, %v", n, err)
	}
}
