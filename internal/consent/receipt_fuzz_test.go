package consent

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzVerifyReceipt signs a receipt, changes it as the fuzzer says (a
// byte replaced, a cut, text appended) and verifies it: a changed receipt
// never verifies with claims other than the signed ones, nothing panics,
// and arbitrary text is refused.
func FuzzVerifyReceipt(f *testing.F) {
	f.Add(0, byte('x'), 0, "")
	f.Add(10, byte('A'), 0, "")
	f.Add(0, byte(0), 40, "")
	f.Add(0, byte(0), 0, ".e30")
	f.Add(-1, byte(0), 0, "eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, at int, b byte, cut int, appended string) {
		key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
		pub := key.Public().(ed25519.PublicKey)
		signed := Claims{Version: KantaraVersion, ConsentReceiptID: "01receipt", PIIPrincipalID: "01subject", Jurisdiction: "EU"}
		receipt, err := sign(key, signed)
		if err != nil {
			t.Fatal(err)
		}
		keys := JWKS{Keys: []JWK{{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(pub), Kid: KeyID(pub), Use: "sig", Alg: "EdDSA"}}}
		r := []byte(receipt)
		if at >= 0 && b != 0 {
			r[at%len(r)] = b
		}
		if cut > 0 {
			r = r[:len(r)-cut%len(r)]
		}
		r = append(r, appended...)
		if at < 0 { // the fuzzer's text alone
			r = []byte(appended)
		}
		c, err := VerifyReceipt(string(r), keys)
		if err != nil {
			return
		}
		if c.ConsentReceiptID != signed.ConsentReceiptID || c.PIIPrincipalID != signed.PIIPrincipalID || c.Version != signed.Version {
			t.Fatalf("a changed receipt verified with other claims: %+v", c)
		}
	})
}
