package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
)

// formatV1 is the first byte of every ciphertext Custodia writes:
// format(1) | key version (4, big endian) | nonce (12) | AES-256-GCM sealed data.
const formatV1 = 1

const headerLen = 1 + 4 + 12

// ErrDecrypt is returned for any ciphertext that does not open: altered
// bytes, a ciphertext moved to another row, column or tenant, or the wrong key.
var ErrDecrypt = errors.New("keyring: ciphertext does not authenticate")

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext under key with a random 96-bit nonce, binding the
// key version and ad.
func seal(key []byte, version uint32, ad, plaintext []byte) []byte {
	gcm, err := newGCM(key)
	if err != nil {
		panic("keyring: bad key length") // keys are generated here, always 32 bytes
	}
	out := make([]byte, headerLen, headerLen+len(plaintext)+gcm.Overhead())
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:5], version)
	if _, err := rand.Read(out[5:headerLen]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return gcm.Seal(out, out[5:headerLen], plaintext, withVersion(ad, version))
}

// open reverses seal; version is read from the header.
func open(key []byte, ad, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < headerLen || ciphertext[0] != formatV1 {
		return nil, ErrDecrypt
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, ErrDecrypt
	}
	version := binary.BigEndian.Uint32(ciphertext[1:5])
	pt, err := gcm.Open(nil, ciphertext[5:headerLen], ciphertext[headerLen:], withVersion(ad, version))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func withVersion(ad []byte, version uint32) []byte {
	out := make([]byte, 0, len(ad)+5)
	out = append(out, ad...)
	out = append(out, 0)
	return binary.BigEndian.AppendUint32(out, version)
}

// associatedData joins parts with NUL separators, length-prefixed so that
// no two different part lists encode the same.
func associatedData(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func randomKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}
