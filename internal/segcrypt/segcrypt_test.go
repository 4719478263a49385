package segcrypt_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/custodia/custodia/internal/segcrypt"
)

var (
	key = bytes.Repeat([]byte{7}, 32)
	ad  = []byte("file 01a0…/version 3")
)

func seal(t testing.TB, pt []byte, chunk int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := segcrypt.NewWriter(&b, key, ad)
	if err != nil {
		t.Fatal(err)
	}
	for p := pt; len(p) > 0; {
		k := min(chunk, len(p))
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(b.Len()) != segcrypt.CiphertextSize(int64(len(pt))) {
		t.Fatalf("%d bytes sealed to %d; CiphertextSize says %d", len(pt), b.Len(), segcrypt.CiphertextSize(int64(len(pt))))
	}
	return b.Bytes()
}

func open(ct, k, a []byte) ([]byte, error) {
	r, err := segcrypt.NewReader(bytes.NewReader(ct), k, a)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestRoundTrip: every size around the segment boundaries, written in
// small and large pieces, reads back whole and by any range.
func TestRoundTrip(t *testing.T) {
	const S = segcrypt.SegmentSize
	for _, n := range []int{0, 1, S - 1, S, S + 1, 2 * S, 3*S + 17} {
		pt := random(n)
		for _, chunk := range []int{1000, S, 5 * S} {
			ct := seal(t, pt, chunk)
			got, err := open(ct, key, ad)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("size %d, chunk %d: %v", n, chunk, err)
			}
			if m, err := segcrypt.PlaintextSize(int64(len(ct))); err != nil || m != int64(n) {
				t.Fatalf("PlaintextSize: %d %v; want %d", m, err, n)
			}
		}
		ct := seal(t, pt, S)
		for _, r := range [][2]int64{{0, -1}, {0, 1}, {S - 1, 2}, {S, S}, {int64(n) / 2, 100}, {int64(n), -1}} {
			if r[0] > int64(n) {
				continue
			}
			var out bytes.Buffer
			if err := segcrypt.ReadRange(&out, bytes.NewReader(ct), int64(len(ct)), key, ad, r[0], r[1]); err != nil {
				t.Fatalf("size %d range %v: %v", n, r, err)
			}
			end := int64(n)
			if r[1] >= 0 {
				end = min(end, r[0]+r[1])
			}
			if !bytes.Equal(out.Bytes(), pt[r[0]:end]) {
				t.Fatalf("size %d range %v: wrong bytes", n, r)
			}
		}
	}
}

// TestTampering: every way of changing a stream is an error, and no
// plaintext of a bad segment is ever returned.
func TestTampering(t *testing.T) {
	const S = segcrypt.SegmentSize
	pt := random(3*S + 100)
	ct := seal(t, pt, S)
	seg := S + 16
	h := segcrypt.HeaderSize
	cases := map[string][]byte{
		"flipped header":         flip(ct, 5),
		"flipped first segment":  flip(ct, h+10),
		"flipped last tag":       flip(ct, len(ct)-1),
		"truncated at boundary":  ct[:h+3*seg],
		"truncated mid-segment":  ct[:h+seg+100],
		"truncated header":       ct[:h-1],
		"appended byte":          append(bytes.Clone(ct), 0),
		"appended segment":       append(bytes.Clone(ct), ct[h:h+seg]...),
		"segments swapped":       swap(ct, h, seg),
		"first segment dropped":  append(bytes.Clone(ct[:h]), ct[h+seg:]...),
		"last segment only tags": ct[:h+3*seg+10],
	}
	for name, bad := range cases {
		got, err := open(bad, key, ad)
		if !errors.Is(err, segcrypt.ErrCorrupt) {
			t.Errorf("%s: %v; want ErrCorrupt", name, err)
		}
		// What was returned before the error is a prefix of the truth, whole segments only.
		if !bytes.HasPrefix(pt, got) || len(got)%S != 0 {
			t.Errorf("%s: %d bytes of plaintext returned that are not whole good segments", name, len(got))
		}
	}
	if _, err := open(ct, bytes.Repeat([]byte{8}, 32), ad); !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Errorf("another key: %v", err)
	}
	if _, err := open(ct, key, []byte("file 01a0…/version 2")); !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Errorf("another version: %v", err)
	}
	var out bytes.Buffer
	if err := segcrypt.ReadRange(&out, bytes.NewReader(flip(ct, h+seg+5)), int64(len(ct)), key, ad, S, 10); !errors.Is(err, segcrypt.ErrCorrupt) || out.Len() != 0 {
		t.Errorf("range over a flipped segment: %v, %d bytes", err, out.Len())
	}
	trunc := ct[:h+2*seg]
	if err := segcrypt.ReadRange(&out, bytes.NewReader(trunc), int64(len(trunc)), key, ad, S, 10); !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Errorf("range of a stream cut at a boundary: %v", err)
	}
}

// TestFile: a File reads any offset, reads forward from one open of its
// source, and catches a source shorter than the size it was told.
func TestFile(t *testing.T) {
	const S = segcrypt.SegmentSize
	pt := random(4*S + 123)
	ct := seal(t, pt, S)
	var opens []int64
	src := func(b []byte) func(int64) (io.ReadCloser, error) {
		return func(off int64) (io.ReadCloser, error) {
			opens = append(opens, off)
			return io.NopCloser(bytes.NewReader(b[min(off, int64(len(b))):])), nil
		}
	}
	f, err := segcrypt.Open(int64(len(ct)), key, ad, src(ct))
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(all, pt) {
		t.Fatalf("read all: %v", err)
	}
	if len(opens) != 1 {
		t.Fatalf("a front-to-back read opened the source %d times, want once", len(opens))
	}
	for _, off := range []int64{3*S + 7, 0, S, S - 1, 4 * S, int64(len(pt)) - 1} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 300)
		n, err := io.ReadFull(f, got)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("offset %d: %v", off, err)
		}
		if want := pt[off:min(off+300, int64(len(pt)))]; !bytes.Equal(got[:n], want) {
			t.Fatalf("offset %d: wrong bytes", off)
		}
	}
	opened := len(opens)
	f.Seek(10, io.SeekStart)
	f.Read(make([]byte, 5))
	f.Seek(0, io.SeekStart) // back inside the segment just opened: no new read of the source
	if got := make([]byte, 20); func() bool { n, _ := io.ReadFull(f, got); return n != 20 || !bytes.Equal(got, pt[:20]) }() {
		t.Fatal("re-reading the segment just opened gave wrong bytes")
	}
	if len(opens) != opened+1 {
		t.Errorf("seeking back inside the open segment opened the source %d times, want once for the first seek", len(opens)-opened)
	}
	if end, _ := f.Seek(0, io.SeekEnd); end != int64(len(pt)) {
		t.Fatalf("seek end = %d, want %d", end, len(pt))
	}
	f.Close()

	short := ct[:len(ct)-200] // the store lost the tail; the row still says the full size
	f, err = segcrypt.Open(int64(len(ct)), key, ad, src(short))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f); !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Fatalf("short source: %v, want ErrCorrupt", err)
	}

	// After a bad segment the File stays failed: no later segment is
	// handed out as if nothing were missing.
	bad := bytes.Clone(ct)
	bad[segcrypt.HeaderSize+10] ^= 1
	f, err = segcrypt.Open(int64(len(bad)), key, ad, src(bad))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 10)); !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Fatalf("first segment flipped: %v", err)
	}
	if n, err := f.Read(make([]byte, 10)); n != 0 || !errors.Is(err, segcrypt.ErrCorrupt) {
		t.Errorf("read after ErrCorrupt: %d bytes, %v", n, err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func swap(b []byte, h, seg int) []byte {
	c := bytes.Clone(b)
	copy(c[h:h+seg], b[h+seg:h+2*seg])
	copy(c[h+seg:h+2*seg], b[h:h+seg])
	return c
}

// TestSaltsDiffer: the same content under the same key seals differently.
func TestSaltsDiffer(t *testing.T) {
	pt := []byte("same content")
	if bytes.Equal(seal(t, pt, 100), seal(t, pt, 100)) {
		t.Error("two seals of the same content are equal")
	}
}

// BenchmarkSeal measures sealing throughput; allocations do not grow with
// the size (the writer holds one segment).
func BenchmarkSeal(b *testing.B) {
	buf := random(1 << 20)
	b.SetBytes(int64(len(buf)) * 16)
	b.ReportAllocs()
	for b.Loop() {
		w, _ := segcrypt.NewWriter(io.Discard, key, ad)
		for range 16 {
			w.Write(buf)
		}
		w.Close()
	}
}
