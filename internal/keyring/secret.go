package keyring

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// NewSecret returns 256 random bits, base64url without padding (43
// characters): the secret of a session, a device or a one-time link. Only
// a hash of it is stored.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// WellFormedSecret reports whether s looks like a NewSecret, so that
// garbage is refused before any lookup.
func WellFormedSecret(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HashSecret is what is stored of a link secret: SHA-256 under a label
// naming the kind of link, so that a secret of one kind never matches
// another kind's row. A 256-bit secret needs no slow hash.
func HashSecret(label, secret string) []byte {
	h := sha256.Sum256([]byte(label + ":" + secret))
	return h[:]
}
