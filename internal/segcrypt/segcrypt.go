// Package segcrypt encrypts a stream of any length in segments, so that
// memory stays constant whatever the size, any byte range can be read
// without the rest, and every change is caught: a flipped, swapped,
// dropped, truncated or appended segment is an error, never wrong content.
//
// Format: a header — magic "CSG1" and a 32-byte random salt — then
// segments of up to SegmentSize plaintext bytes, each sealed with
// AES-256-GCM (16-byte tag). The segment key is HKDF-SHA-256(key, salt), so
// a key may seal many streams; the nonce is the segment's index and a flag
// saying whether it is the last one; the associated data is the caller's
// (a file id and version), so a segment cannot move to another file,
// another version or another place, and a stream cut at a segment
// boundary lacks its final flag.
package segcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// SegmentSize is the plaintext size of every segment but the last.
	SegmentSize = 64 << 10
	tagSize     = 16
	saltSize    = 32
	magic       = "CSG1"
	// HeaderSize is the size of the header before the first segment.
	HeaderSize = len(magic) + saltSize
	segCT      = SegmentSize + tagSize
)

// ErrCorrupt is returned for a stream that does not open: changed,
// truncated, extended, or sealed under another key or associated data.
var ErrCorrupt = errors.New("segcrypt: the content is corrupt or not sealed for this file")

// CiphertextSize is the sealed size of n plaintext bytes.
func CiphertextSize(n int64) int64 {
	segs := n/SegmentSize + 1 // the last segment may be empty, never absent
	if n > 0 && n%SegmentSize == 0 {
		segs = n / SegmentSize
	}
	return int64(HeaderSize) + n + segs*tagSize
}

// PlaintextSize is the plaintext size of a sealed stream of n bytes.
func PlaintextSize(n int64) (int64, error) {
	body := n - int64(HeaderSize)
	if body < tagSize {
		return 0, ErrCorrupt
	}
	segs := (body + segCT - 1) / segCT
	if body%segCT != 0 && body%segCT < tagSize {
		return 0, ErrCorrupt
	}
	return body - segs*tagSize, nil
}

func aead(key, salt []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("segcrypt: want a 32-byte key, got %d", len(key))
	}
	k, err := hkdf.Key(sha256.New, key, salt, "custodia/v1 segments", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func nonce(index uint64, final bool) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n, index)
	if final {
		n[8] = 1
	}
	return n
}

// Writer seals what is written to it; Close seals the last segment.
type Writer struct {
	w     io.Writer
	aead  cipher.AEAD
	ad    []byte
	buf   []byte // plaintext not sealed yet: at most one segment
	out   []byte
	index uint64
	err   error
}

// NewWriter writes the header to w and returns a Writer sealing under key
// (32 bytes) with associated data ad.
func NewWriter(w io.Writer, key, ad []byte) (*Writer, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	a, err := aead(key, salt)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(append([]byte(magic), salt...)); err != nil {
		return nil, err
	}
	return &Writer{w: w, aead: a, ad: ad, buf: make([]byte, 0, SegmentSize), out: make([]byte, 0, segCT)}, nil
}

// Write seals p. A full segment is sealed only when more follows, since
// only then is it known not to be the last.
func (sw *Writer) Write(p []byte) (int, error) {
	if sw.err != nil {
		return 0, sw.err
	}
	n := 0
	for len(p) > 0 {
		if len(sw.buf) == SegmentSize {
			if sw.err = sw.seal(false); sw.err != nil {
				return n, sw.err
			}
		}
		k := copy(sw.buf[len(sw.buf):SegmentSize], p)
		sw.buf = sw.buf[:len(sw.buf)+k]
		p, n = p[k:], n+k
	}
	return n, nil
}

func (sw *Writer) seal(final bool) error {
	sw.out = sw.aead.Seal(sw.out[:0], nonce(sw.index, final), sw.buf, sw.ad)
	sw.index++
	sw.buf = sw.buf[:0]
	_, err := sw.w.Write(sw.out)
	return err
}

// Close seals the last segment (empty when nothing is pending). It does
// not close the underlying writer.
func (sw *Writer) Close() error {
	if sw.err != nil {
		return sw.err
	}
	sw.err = sw.seal(true)
	if sw.err == nil {
		sw.err = errors.New("segcrypt: writer closed")
		return nil
	}
	return sw.err
}

// Reader opens a sealed stream read front to back.
type Reader struct {
	r     io.Reader
	aead  cipher.AEAD
	ad    []byte
	ct    []byte // one segment and one byte of look-ahead
	pbuf  []byte // the opened segment
	plain []byte // the part of pbuf not yet read
	index uint64
	done  bool
	err   error
}

// NewReader reads the header from r and returns a Reader opening under key
// with associated data ad.
func NewReader(r io.Reader, key, ad []byte) (*Reader, error) {
	h := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, h); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrCorrupt
		}
		return nil, err
	}
	if string(h[:len(magic)]) != magic {
		return nil, ErrCorrupt
	}
	a, err := aead(key, h[len(magic):])
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, aead: a, ad: ad, ct: make([]byte, 0, segCT+1), pbuf: make([]byte, 0, SegmentSize)}, nil
}

// Read returns opened plaintext; a segment that does not open is
// ErrCorrupt, and nothing of it is returned.
func (sr *Reader) Read(p []byte) (int, error) {
	for len(sr.plain) == 0 {
		if sr.err != nil {
			return 0, sr.err
		}
		if sr.done {
			return 0, io.EOF
		}
		sr.err = sr.next()
	}
	n := copy(p, sr.plain)
	sr.plain = sr.plain[n:]
	return n, nil
}

// next opens the next segment: it is the last one when nothing follows it.
func (sr *Reader) next() error {
	have := len(sr.ct)
	sr.ct = sr.ct[:segCT+1]
	n, err := io.ReadFull(sr.r, sr.ct[have:])
	sr.ct = sr.ct[:have+n]
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	final := len(sr.ct) <= segCT
	seg := sr.ct
	if !final {
		seg = sr.ct[:segCT]
	}
	if len(seg) < tagSize {
		return ErrCorrupt
	}
	pt, oerr := sr.aead.Open(sr.pbuf[:0], nonce(sr.index, final), seg, sr.ad)
	if oerr != nil {
		return ErrCorrupt
	}
	sr.index++
	sr.plain = pt
	if final {
		sr.done, sr.ct = true, sr.ct[:0]
	} else {
		sr.ct = append(sr.ct[:0], sr.ct[segCT])
	}
	return nil
}

// ReadRange opens plaintext bytes [off, off+n) of a sealed stream of size
// sealedSize read through ra, reading only the segments that hold them,
// and writes them to w. n < 0 reads to the end.
func ReadRange(w io.Writer, ra io.ReaderAt, sealedSize int64, key, ad []byte, off, n int64) error {
	f, err := Open(sealedSize, key, ad, func(at int64) (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(ra, at, sealedSize-at)), nil
	})
	if err != nil {
		return err
	}
	defer f.Close()
	if off < 0 || off > f.size {
		return fmt.Errorf("segcrypt: offset %d outside 0..%d", off, f.size)
	}
	if n < 0 || off+n > f.size {
		n = f.size - off
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	_, err = io.CopyN(w, f, n)
	return err
}

// File reads a sealed stream of known size at any offset: it is an
// io.ReadSeeker over the plaintext (what http.ServeContent needs for range
// requests). Reads go forward from a source opened at the segment holding
// the offset; a Seek elsewhere opens the source again there, so a ranged
// read costs one request to the store and the segments it spans.
type File struct {
	src    func(off int64) (io.ReadCloser, error)
	aead   cipher.AEAD
	ad     []byte
	sealed int64
	size   int64
	last   uint64 // index of the final segment
	r      io.ReadCloser
	next   uint64 // the segment r is at
	seg    []byte
	pbuf   []byte
	opened []byte // the last segment opened, whole
	at     int64  // its plaintext offset (-1: none)
	plain  []byte // what is left of it from pos
	pos    int64
	err    error // sticky: after ErrCorrupt nothing more is read
}

// Open reads the header of a sealed stream of sealedSize bytes through
// src, which answers the stream from a given offset to its end, and
// returns a File opening under key with associated data ad. The size
// comes from the caller (a database row, not the store), so a blob cut
// short or grown is caught.
func Open(sealedSize int64, key, ad []byte, src func(off int64) (io.ReadCloser, error)) (*File, error) {
	size, err := PlaintextSize(sealedSize)
	if err != nil {
		return nil, err
	}
	r, err := src(0)
	if err != nil {
		return nil, err
	}
	h := make([]byte, HeaderSize)
	if _, err := io.ReadFull(r, h); err != nil {
		r.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrCorrupt
		}
		return nil, err
	}
	if string(h[:len(magic)]) != magic {
		r.Close()
		return nil, ErrCorrupt
	}
	a, err := aead(key, h[len(magic):])
	if err != nil {
		r.Close()
		return nil, err
	}
	return &File{src: src, aead: a, ad: ad, sealed: sealedSize, size: size,
		last: uint64((sealedSize - int64(HeaderSize) - 1) / segCT), r: r, at: -1,
		seg: make([]byte, segCT), pbuf: make([]byte, 0, SegmentSize)}, nil
}

// Size is the plaintext size.
func (f *File) Size() int64 { return f.size }

// Read returns opened plaintext from the current offset; a segment that
// does not open is ErrCorrupt, and nothing of it is returned.
func (f *File) Read(p []byte) (int, error) {
	for len(f.plain) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.pos >= f.size {
			return 0, io.EOF
		}
		if err := f.load(); err != nil {
			if errors.Is(err, ErrCorrupt) {
				f.err = err
			}
			return 0, err
		}
	}
	n := copy(p, f.plain)
	f.plain = f.plain[n:]
	f.pos += int64(n)
	return n, nil
}

// load opens the segment holding pos, reopening the source when it is
// not already there.
func (f *File) load() error {
	i := uint64(f.pos / SegmentSize)
	if f.r == nil || f.next != i {
		if f.r != nil {
			f.r.Close()
		}
		r, err := f.src(int64(HeaderSize) + int64(i)*segCT)
		if err != nil {
			f.r = nil
			return err
		}
		f.r, f.next = r, i
	}
	n := int64(segCT)
	if i == f.last {
		n = f.sealed - int64(HeaderSize) - int64(i)*segCT
	}
	seg := f.seg[:n]
	if _, err := io.ReadFull(f.r, seg); err != nil {
		f.r.Close()
		f.r = nil
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrCorrupt
		}
		return err
	}
	f.next++
	pt, err := f.aead.Open(f.pbuf[:0], nonce(i, i == f.last), seg, f.ad)
	if err != nil {
		f.at = -1
		return ErrCorrupt
	}
	f.opened, f.at = pt, int64(i)*SegmentSize
	f.plain = pt[f.pos-f.at:]
	return nil
}

// Seek sets the plaintext offset for the next Read.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += f.size
	}
	if offset < 0 {
		return f.pos, errors.New("segcrypt: seek before the start")
	}
	if offset != f.pos {
		f.pos, f.plain = offset, nil
		if f.at >= 0 && offset >= f.at && offset < f.at+int64(len(f.opened)) {
			f.plain = f.opened[offset-f.at:] // still in the segment last opened
		}
	}
	return offset, nil
}

// Close closes the source.
func (f *File) Close() error {
	if f.r == nil {
		return nil
	}
	err := f.r.Close()
	f.r = nil
	return err
}
