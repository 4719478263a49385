package segcrypt_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/custodia/custodia/internal/segcrypt"
)

// FuzzOpen seals a plaintext, changes the ciphertext as the fuzzer says
// (a flipped byte, a cut, bytes appended) and opens it, front to back and
// by range. Any change is an error — never a panic, never a byte that is
// not the original's at its place.
func FuzzOpen(f *testing.F) {
	const S = segcrypt.SegmentSize
	for _, c := range []struct {
		n        uint32
		flip     uint32
		xor      byte
		cut      uint32
		appended []byte
	}{
		{0, 0, 0, 0, nil}, {10, 3, 1, 0, nil}, {S + 5, S + 40, 0x80, 0, nil}, {2*S + 1, 0, 0, S + 20, nil},
		{S, 0, 0, 0, []byte{0}}, {3 * S, 2*S + 100, 1, 0, nil}, {100, 0, 0, 17, nil}, {S + 1, 0, 0, uint32(segcrypt.CiphertextSize(S)), nil},
	} {
		f.Add(c.n, c.flip, c.xor, c.cut, c.appended)
	}
	f.Fuzz(func(t *testing.T, n, flip uint32, xor byte, cut uint32, appended []byte) {
		n %= 3*S + 100
		pt := make([]byte, n)
		for i := range pt {
			pt[i] = byte(i * 7 % 253)
		}
		sealed := seal(t, pt, 4096)
		ct := bytes.Clone(sealed)
		if xor != 0 {
			ct[int(flip)%len(ct)] ^= xor
		}
		if cut != 0 {
			ct = ct[:int(cut)%len(ct)]
		}
		ct = append(ct, appended...)
		changed := !bytes.Equal(ct, sealed)

		var got bytes.Buffer
		err := func() error {
			r, err := segcrypt.NewReader(bytes.NewReader(ct), key, ad)
			if err != nil {
				return err
			}
			_, err = io.Copy(&got, r)
			return err
		}()
		switch {
		case changed && err == nil:
			t.Fatalf("a changed ciphertext opened without error (%d → %d bytes)", len(sealed), len(ct))
		case !changed && err != nil:
			t.Fatalf("the sealed stream did not open: %v", err)
		case err != nil && !errors.Is(err, segcrypt.ErrCorrupt):
			t.Fatalf("not ErrCorrupt: %v", err)
		}
		if !bytes.HasPrefix(pt, got.Bytes()) {
			t.Fatalf("bytes that are not the plaintext's came out (%d of them)", got.Len())
		}

		// By range, from the middle.
		off := int64(n / 3)
		var part bytes.Buffer
		err = segcrypt.ReadRange(&part, bytes.NewReader(ct), int64(len(ct)), key, ad, off, -1)
		if !changed && (err != nil || !bytes.Equal(part.Bytes(), pt[off:])) {
			t.Fatalf("range from %d of the sealed stream: %v", off, err)
		}
		if int64(part.Len()) > int64(n)-off || !bytes.HasPrefix(pt[off:], part.Bytes()) {
			t.Fatalf("a range read gave bytes that are not the plaintext's")
		}
	})
}

// FuzzNewReader opens arbitrary bytes: an error, never a panic.
func FuzzNewReader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("CSEG"))
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, ct []byte) {
		r, err := segcrypt.NewReader(bytes.NewReader(ct), key, ad)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r); err == nil {
			t.Fatal("random bytes opened")
		}
	})
}
