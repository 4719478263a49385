// Package passkeytest is a software WebAuthn authenticator for tests: an
// ES256 key behind "none" attestation, answering the options a relying
// party sends the way a browser and a security key together would. Its
// fields can be bent to play a phishing site, a cloned key or a replay.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator holds one credential.
type Authenticator struct {
	Origin    string // what the "browser" puts in clientDataJSON
	RPID      string // whose rpIdHash the authenticator signs
	Counter   uint32 // the signature counter last reported; each answer reports one more
	NoCounter bool   // report 0 always, as synced passkeys do

	key    *ecdsa.PrivateKey
	credID []byte
}

// New returns an authenticator for the relying party at publicURL (its
// origin and host name).
func New(t testing.TB, publicURL string) *Authenticator {
	t.Helper()
	u, err := url.Parse(publicURL)
	if err != nil {
		t.Fatal(err)
	}
	origin := u.Scheme + "://" + u.Host
	if u.Port() == "443" {
		origin = u.Scheme + "://" + u.Hostname()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return &Authenticator{Origin: origin, RPID: u.Hostname(), key: key, credID: id}
}

// Clone returns an authenticator with the same credential id and counter
// but another private key: what an attacker who copied the id has.
func (a *Authenticator) Clone(t testing.TB) *Authenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := *a
	c.key = key
	return &c
}

// CredentialID is the credential's id, base64url.
func (a *Authenticator) CredentialID() string { return b64(a.credID) }

var b64 = base64.RawURLEncoding.EncodeToString

// options is the part of PublicKeyCredential{Creation,Request}OptionsJSON
// an authenticator looks at.
type options struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		AllowCredentials []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
		ExcludeCredentials []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
	} `json:"publicKey"`
}

func parseOptions(t testing.TB, raw []byte) options {
	t.Helper()
	var o options
	if err := json.Unmarshal(raw, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("not WebAuthn options (%v): %s", err, raw)
	}
	return o
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

// Flags of authenticator data.
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagAT = 0x40 // attested credential data included
)

func (a *Authenticator) authData(flags byte) []byte {
	rp := sha256.Sum256([]byte(a.RPID))
	out := append(rp[:], flags)
	if !a.NoCounter {
		a.Counter++
	}
	count := a.Counter
	if a.NoCounter {
		count = 0
	}
	return binary.BigEndian.AppendUint32(out, count)
}

// Create answers creation options (the relying party's JSON, with
// "publicKey") and returns the PublicKeyCredential as JSON.
func (a *Authenticator) Create(t testing.TB, raw []byte) []byte {
	t.Helper()
	o := parseOptions(t, raw)
	for _, ex := range o.PublicKey.ExcludeCredentials {
		if ex.ID == b64(a.credID) {
			t.Fatalf("the relying party excludes this authenticator's credential")
		}
	}
	pub, err := a.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:]}) // EC2, ES256, P-256
	if err != nil {
		t.Fatal(err)
	}
	auth := a.authData(flagUP | flagUV | flagAT)
	auth = append(auth, make([]byte, 16)...) // AAGUID: none
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(a.credID)))
	auth = append(append(auth, a.credID...), cose...)
	att, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64(a.credID), "rawId": b64(a.credID), "type": "public-key", "authenticatorAttachment": "cross-platform",
		"response": map[string]any{
			"clientDataJSON":    b64(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64(att),
			"transports":        []string{"usb"},
		},
		"clientExtensionResults": map[string]any{},
	})
	return out
}

// Get answers request options and returns the PublicKeyCredential
// (an assertion) as JSON.
func (a *Authenticator) Get(t testing.TB, raw []byte) []byte {
	t.Helper()
	o := parseOptions(t, raw)
	auth := a.authData(flagUP | flagUV)
	client := a.clientData("webauthn.get", o.PublicKey.Challenge)
	ch := sha256.Sum256(client)
	digest := sha256.Sum256(append(append([]byte{}, auth...), ch[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{
		"id": b64(a.credID), "rawId": b64(a.credID), "type": "public-key", "authenticatorAttachment": "cross-platform",
		"response": map[string]any{
			"clientDataJSON":    b64(client),
			"authenticatorData": b64(auth),
			"signature":         b64(sig),
		},
		"clientExtensionResults": map[string]any{},
	})
	return out
}
