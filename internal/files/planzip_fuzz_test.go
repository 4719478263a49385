package files

import (
	"archive/zip"
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzPlanZip reads any bytes as a zip and plans its import below a
// folder: never a panic; every planned path is a valid path inside the
// target, planned once, after the folders above it; the total is what the
// planned files declare; and a zip with problems is never planned whole.
func FuzzPlanZip(f *testing.F) {
	zipOf := func(entries ...string) []byte {
		var b bytes.Buffer
		w := zip.NewWriter(&b)
		for _, name := range entries {
			if name == "link" {
				h := &zip.FileHeader{Name: name}
				h.SetMode(os.ModeSymlink | 0o777)
				fw, _ := w.CreateHeader(h)
				fw.Write([]byte("/etc/passwd"))
				continue
			}
			fw, _ := w.Create(name)
			if !strings.HasSuffix(name, "/") {
				fw.Write([]byte("content of " + name))
			}
		}
		w.Close()
		return b.Bytes()
	}
	for _, z := range [][]byte{
		zipOf("a.txt", "dir/", "dir/b.txt", "x/y/z.txt"),
		zipOf("../evil.txt", "/abs", `a\b`, "a/../../c"),
		zipOf("a.txt", "a.txt", "a", "a/b"),
		zipOf("link", "ok\u202Etxt.exe"),
		zipOf(strings.Repeat("d/", 40) + "deep.txt"),
		[]byte("not a zip"),
	} {
		f.Add(z)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		base := []string{"import", "here"}
		plan, total, problems := planZip(base, zr.File)
		seen := map[string]bool{}
		var files int64
		for _, p := range plan {
			key := strings.Join(p.names, "/")
			if seen[key] {
				t.Fatalf("%q planned twice", key)
			}
			seen[key] = true
			again, err := SplitPath("path", key)
			n := min(len(p.names), len(base)) // the target's own folders, or what goes inside it
			if err != nil || !slices.Equal(again, p.names) || !slices.Equal(p.names[:n], base[:n]) {
				t.Fatalf("planned %q: not a valid path inside the target (%v)", key, err)
			}
			if len(p.names) > MaxDepth {
				t.Fatalf("planned %q deeper than %d", key, MaxDepth)
			}
			for j := 1; j < len(p.names); j++ {
				if !seen[strings.Join(p.names[:j], "/")] {
					t.Fatalf("%q planned before its folder %q", key, strings.Join(p.names[:j], "/"))
				}
			}
			if !p.folder {
				if p.file == nil || !p.file.Mode().IsRegular() {
					t.Fatalf("%q planned as a file from a non-file entry", key)
				}
				files += int64(p.file.UncompressedSize64)
			}
		}
		if len(problems) == 0 && files != total {
			t.Fatalf("total %d; the planned files declare %d", total, files)
		}
	})
}
