package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkSubjects measures create and read through the whole handler
// stack (middleware, authentication, encryption, blind indexes, SQL and
// the audit event committed with each), sequentially and with 16
// concurrent clients.
func BenchmarkSubjects(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			url := ""
			if engine == "postgres" {
				url = sqldbtest.PostgresURL(b)
			}
			env := apptest.NewWith(b, url, apptest.AsInProduction)
			h := env.App.Handler()
			var seq atomic.Int64
			do := func(method, path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+env.Token)
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			create := func() string {
				n := seq.Add(1)
				rec := do("POST", "/api/v1/subjects", fmt.Sprintf(`{"email":"bench%d@example.org","phone":"+4420794%05d","attributes":{"plan":"pro","n":%d}}`, n, n%100000, n))
				if rec.Code != http.StatusCreated {
					b.Fatalf("create: %d %s", rec.Code, rec.Body)
				}
				return rec.Header().Get("Location")
			}
			b.Run("create", func(b *testing.B) {
				for b.Loop() {
					create()
				}
			})
			b.Run("create-16-clients", func(b *testing.B) {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						create()
					}
				})
			})
			loc := create()
			b.Run("read", func(b *testing.B) {
				for b.Loop() {
					if rec := do("GET", loc, ""); rec.Code != 200 {
						b.Fatalf("read: %d", rec.Code)
					}
				}
			})
			b.Run("read-16-clients", func(b *testing.B) {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if rec := do("GET", loc, ""); rec.Code != 200 {
							b.Errorf("read: %d", rec.Code)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkFile1GiB measures a 1 GiB file going in and out through the
// handler stack in process (no TLS) on SQLite and the local file region,
// against a plain copy of the same file on the same disk: upload reads
// the source file and writes a sealed blob; download opens the blob and
// writes the plaintext to a file; copy reads the source and writes a
// copy; resumable sends it as a resumable upload in parts. Each reports MB/s, its time as a multiple of the copy's, and the
// peak of the Go heap above what it was before.
func BenchmarkFile1GiB(b *testing.B) {
	const size = 1 << 30
	env := apptest.NewWith(b, "", apptest.AsInProduction)
	h := env.App.Handler()
	dir := b.TempDir()
	src := filepath.Join(dir, "source.bin")
	if err := writePattern(src, size); err != nil {
		b.Fatal(err)
	}
	r := env.Do(b, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "Bench"})
	spaceID := r.Map(b)["id"].(string)
	path := "/api/v1/spaces/" + spaceID + "/files/big.bin"
	var copyTime time.Duration
	measure := func(b *testing.B, name string, op func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			var total time.Duration
			var peak uint64
			for b.Loop() {
				stop := heapPeak()
				start := time.Now()
				op(b)
				total += time.Since(start)
				peak = max(peak, stop())
			}
			per := total / time.Duration(b.N)
			if name == "copy" {
				copyTime = per
			} else if copyTime > 0 {
				b.ReportMetric(float64(per)/float64(copyTime), "x-copy")
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
	// copy is io.Copy of the source to a new file on the same disk;
	// copy+sync makes it durable too — what an upload must at least cost
	// now that a local region syncs before answering.
	copyFile := func(sync bool) func(b *testing.B) {
		return func(b *testing.B) {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			out, err := os.Create(filepath.Join(dir, "copy.bin"))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Close()
			if _, err := io.Copy(out, in); err != nil {
				b.Fatal(err)
			}
			if sync {
				if err := out.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	measure(b, "copy", copyFile(false))
	measure(b, "copy+sync", copyFile(true))
	measure(b, "upload", func(b *testing.B) {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		req := httptest.NewRequest("PUT", path, in)
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+env.Token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			b.Fatalf("upload: %d %s", rec.Code, rec.Body)
		}
	})
	// resumable: the same file as a resumable upload in 16 MiB parts —
	// each stored sealed, then read back into the file at the last one.
	measure(b, "resumable", func(b *testing.B) {
		const part = 16 << 20
		r := env.Do(b, env.Token, "POST", "/api/v1/spaces/"+spaceID+"/uploads", map[string]any{"path": "resumed.bin", "size": size})
		if r.Status != http.StatusCreated {
			b.Fatalf("start: %d %s", r.Status, r.Body)
		}
		id := r.Map(b)["id"].(string)
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		for off := int64(0); off < size; off += part {
			req := httptest.NewRequest("PATCH", "/api/v1/uploads/"+id, io.NewSectionReader(in, off, part))
			req.ContentLength = part
			req.Header.Set("Authorization", "Bearer "+env.Token)
			req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if want := map[bool]int{true: http.StatusNoContent, false: http.StatusOK}[off+part < size]; rec.Code != want && rec.Code != http.StatusCreated {
				b.Fatalf("part at %d: %d %s", off, rec.Code, rec.Body)
			}
		}
	})
	measure(b, "download", func(b *testing.B) {
		out, err := os.Create(filepath.Join(dir, "download.bin"))
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		w := &fileResponse{header: http.Header{}, f: out}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+env.Token)
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != size {
			b.Fatalf("download: %d, %d bytes", w.code, w.n)
		}
	})
}

// writePattern writes n bytes of a repeating pattern to path.
func writePattern(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := bytes.Repeat([]byte("custodia benchmark content 0123456789\n"), 1<<15)
	for n > 0 {
		k := min(int64(len(chunk)), n)
		if _, err := f.Write(chunk[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}

// heapPeak samples the heap until the returned function is called, which
// answers the highest heap seen above the heap at the start.
func heapPeak() func() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > peak.Load() {
				peak.Store(m.HeapAlloc - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		return peak.Load()
	}
}

// fileResponse is a ResponseWriter that streams the body to a file.
type fileResponse struct {
	header http.Header
	f      *os.File
	code   int
	n      int64
}

func (w *fileResponse) Header() http.Header { return w.header }
func (w *fileResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *fileResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}
