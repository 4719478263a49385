package anchor_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/blobstore/blobtest"
)

// TestNodesShareALocation, on a local directory and on a real
// S3-compatible server: each node writes its own object; a reader takes
// the highest head per tenant and every node's keys; a head never moves
// back; a node reopened remembers what it wrote.
func TestNodesShareALocation(t *testing.T) {
	dir := t.TempDir()
	for name, url := range map[string]string{"directory": "file://" + dir, "s3": blobtest.StartS3(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := func(node string) *anchor.Anchor {
				t.Helper()
				a, err := anchor.Open(ctx, url, node, anchor.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			a, b := open("a"), open("b")
			a.Note("t1", anchor.Head{Seq: 5, Hash: []byte{5}, Key: []byte("k1")})
			a.Note("t1", anchor.Head{Seq: 3, Hash: []byte{3}, Key: []byte("k1")}) // older: ignored
			b.Note("t1", anchor.Head{Seq: 9, Hash: []byte{9}, Key: []byte("k2")})
			b.Note("t2", anchor.Head{Seq: 1, Hash: []byte{1}, Key: []byte("k3")})
			for _, n := range []*anchor.Anchor{a, b} {
				if err := n.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got, err := a.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if t1 := got["t1"]; t1.Head.Seq != 9 || len(t1.Keys) != 2 || got["t2"].Head.Seq != 1 {
				t.Errorf("merged: %+v", got)
			}
			if k, ok := a.Known("t1"); !ok || k.Head.Seq != 5 {
				t.Errorf("node a's own head: %+v %v; want 5, never moved back to 3", k, ok)
			}
			a.Note("t1", anchor.Head{Seq: 7, Hash: []byte{7}, Key: []byte("k1")})
			if err := a.Close(); err != nil { // writes what is not written yet
				t.Fatal(err)
			}
			a = open("a")
			defer a.Close()
			defer b.Close()
			if k, ok := a.Known("t1"); !ok || k.Head.Seq != 7 || len(k.History) != 1 || k.History[0].Seq != 5 {
				t.Errorf("node a reopened: %+v %v", k, ok)
			}
		})
	}
	// The directory holds one object per node and no temporary files.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "a.json" || names[1] != "b.json" {
		t.Errorf("anchor directory: %v", names)
	}
}

// TestWriteFileDurably replaces a file whole, and a foreign object in the
// location is refused rather than merged.
func TestWriteFileDurably(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	for _, content := range []string{"first", "second"} {
		if err := anchor.WriteFileDurably(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Errorf("after writing %q: %q %v", content, b, err)
		}
	}
	if err := anchor.WriteFileDurably(path, []byte(`{"format":"something else"}`)); err != nil {
		t.Fatal(err)
	}
	a, err := anchor.Open(context.Background(), "file://"+dir, "x", anchor.Options{})
	if err == nil {
		a.Close()
		t.Error("an object of another format was accepted")
	}
}

// Two processes under one node name (two commands run at once on a host)
// each write the object whole: the later write keeps what the earlier
// anchored instead of writing it away.
func TestSameNodeNameKeepsTheOthersHeads(t *testing.T) {
	ctx := context.Background()
	dir := "file://" + t.TempDir()
	a, err := anchor.Open(ctx, dir, "host-cli", anchor.Options{Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := anchor.Open(ctx, dir, "host-cli", anchor.Options{Manual: true}) // opened before a writes
	if err != nil {
		t.Fatal(err)
	}
	a.Note("t1", anchor.Head{Seq: 4, Hash: []byte{4}, Key: []byte("k1")})
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.Note("t2", anchor.Head{Seq: 2, Hash: []byte{2}, Key: []byte("k2")})
	b.Note("t1", anchor.Head{Seq: 3, Hash: []byte{3}, Key: []byte("k1")}) // behind a's
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	c, err := anchor.Open(ctx, dir, "reader", anchor.Options{Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	all, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all["t1"].Head.Seq != 4 || all["t2"].Head.Seq != 2 {
		t.Errorf("after both wrote: t1 at %d (want 4), t2 at %d (want 2)", all["t1"].Head.Seq, all["t2"].Head.Seq)
	}
}
