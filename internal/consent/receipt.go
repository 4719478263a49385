package consent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/tenant"
)

// Receipts are JSON Web Signatures (RFC 7515, compact form) with EdDSA
// over Ed25519 (RFC 8037), so any JOSE library verifies them offline with
// the tenant's published key. The claims follow the Kantara Initiative
// Consent Receipt Specification 1.1, plus JWT's iss/iat/jti and a
// "custodia" object with the ledger's own facts (action, notice hash,
// place in the chain). A receipt names the person only by the subject's
// random id.

// KantaraVersion is the consent receipt specification the claims follow.
const KantaraVersion = "KI-CR-v1.1.0"

// Claims are a receipt's payload.
type Claims struct {
	Version          string           `json:"version"`
	Jurisdiction     string           `json:"jurisdiction"`
	ConsentTimestamp int64            `json:"consentTimestamp"`
	CollectionMethod string           `json:"collectionMethod"`
	ConsentReceiptID string           `json:"consentReceiptID"`
	PublicKey        string           `json:"publicKey"`
	Language         string           `json:"language"`
	PIIPrincipalID   string           `json:"piiPrincipalId"`
	PIIControllers   []Controller     `json:"piiControllers"`
	PolicyURL        string           `json:"policyUrl"`
	Services         []ReceiptService `json:"services"`
	Sensitive        bool             `json:"sensitive"`
	SPICat           []string         `json:"spiCat"`

	Issuer   string `json:"iss"`
	IssuedAt int64  `json:"iat"`
	JWTID    string `json:"jti"`

	Custodia LedgerFacts `json:"custodia"`
}

// Controller is the organisation that holds the data.
type Controller struct {
	PIIController string `json:"piiController"`
	OnBehalf      bool   `json:"onBehalf"`
}

// ReceiptService is Kantara's "service": what the consent is for.
type ReceiptService struct {
	Service  string           `json:"service"`
	Purposes []ReceiptPurpose `json:"purposes"`
}

// ReceiptPurpose is one purpose of a ReceiptService.
type ReceiptPurpose struct {
	Purpose              string   `json:"purpose"`
	PurposeCategory      []string `json:"purposeCategory"`
	ConsentType          string   `json:"consentType"`
	PIICategory          []string `json:"piiCategory"`
	PrimaryPurpose       bool     `json:"primaryPurpose"`
	Termination          string   `json:"termination"`
	ThirdPartyDisclosure bool     `json:"thirdPartyDisclosure"`
	ThirdPartyName       string   `json:"thirdPartyName,omitempty"`
}

// LedgerFacts tie a receipt to its ledger event.
type LedgerFacts struct {
	Action        string `json:"action"` // grant | withdraw
	PurposeKey    string `json:"purposeKey"`
	NoticeVersion int    `json:"noticeVersion"`
	NoticeHash    string `json:"noticeHash"` // SHA-256 of the notice text
	ValidUntil    int64  `json:"validUntil,omitempty"`
	EventSeq      int64  `json:"eventSeq"`
	EventHash     string `json:"eventHash"`
}

// KeyID names a receipt key: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

var b64 = base64.RawURLEncoding

// receipt builds and signs the receipt of e for purpose p.
func (s *Service) receipt(ctx context.Context, q sqldb.Q, t tenant.Tenant, p register.Purpose, e Event) (string, error) {
	key, err := s.keys.ConsentSigningKey(ctx, q, t.ID)
	if err != nil {
		return "", err
	}
	pub := key.Public().(ed25519.PublicKey)
	termination := "until withdrawn"
	facts := LedgerFacts{Action: e.Action, PurposeKey: p.Key, NoticeVersion: e.NoticeVersion, NoticeHash: e.NoticeHash,
		EventSeq: e.Seq, EventHash: e.Hash}
	if e.ValidUntil != nil {
		facts.ValidUntil = e.ValidUntil.Unix()
		termination = "until withdrawn, at the latest " + e.ValidUntil.Format("2006-01-02")
	}
	var spi []string
	for _, c := range p.DataCategories {
		if len(register.Specials([]string{c})) > 0 {
			spi = append(spi, c)
		}
	}
	description := p.Description
	if description == "" {
		description = p.Name
	}
	site := s.issuer + "/privacy/" + t.Slug
	c := Claims{Version: KantaraVersion, Jurisdiction: "EU", ConsentTimestamp: e.CreatedAt.Unix(), CollectionMethod: e.Method,
		ConsentReceiptID: e.ID, PublicKey: b64.EncodeToString(pub), Language: "en", PIIPrincipalID: e.SubjectID,
		PIIControllers: []Controller{{PIIController: t.Name}}, PolicyURL: site,
		Services: []ReceiptService{{Service: p.Name, Purposes: []ReceiptPurpose{{Purpose: description, PurposeCategory: []string{p.Key},
			ConsentType: "EXPLICIT", PIICategory: p.DataCategories, PrimaryPurpose: true, Termination: termination,
			ThirdPartyDisclosure: len(p.Recipients) > 0, ThirdPartyName: strings.Join(p.Recipients, "; ")}}}},
		Sensitive: len(spi) > 0, SPICat: nonNil(spi), Issuer: site, IssuedAt: e.CreatedAt.Unix(), JWTID: e.ID, Custodia: facts}
	return sign(key, c)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

func sign(key ed25519.PrivateKey, c Claims) (string, error) {
	h, err := json.Marshal(header{Alg: "EdDSA", Typ: "JWT", Kid: KeyID(key.Public().(ed25519.PublicKey))})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return input + "." + b64.EncodeToString(ed25519.Sign(key, []byte(input))), nil
}

// JWK is a public key in JSON Web Key form (RFC 8037).
type JWK struct {
	Kty string `json:"kty"` // OKP
	Crv string `json:"crv"` // Ed25519
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS is a key set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Keys returns the key set that verifies the receipts of the tenant with
// slug: what /privacy/{tenant}/keys publishes.
func (s *Service) Keys(ctx context.Context, slug string) (JWKS, error) {
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return JWKS{}, err
	}
	key, err := s.keys.ConsentSigningKey(ctx, s.db.Read(), t.ID)
	if err != nil {
		return JWKS{}, err
	}
	pub := key.Public().(ed25519.PublicKey)
	return JWKS{Keys: []JWK{{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(pub), Kid: KeyID(pub), Use: "sig", Alg: "EdDSA"}}}, nil
}

// VerifyReceipt checks a receipt against a key set, as anyone holding the
// published keys can, and returns its claims.
func VerifyReceipt(receipt string, keys JWKS) (Claims, error) {
	parts := strings.Split(receipt, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("not a compact JWS")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("header: %w", err)
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil || h.Alg != "EdDSA" {
		return Claims{}, errors.New("header: want alg EdDSA")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return Claims{}, fmt.Errorf("signature: %w", err)
	}
	for _, k := range keys.Keys {
		if k.Kid != h.Kid || k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		pub, err := b64.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
			return Claims{}, errors.New("the signature does not match")
		}
		pb, err := b64.DecodeString(parts[1])
		if err != nil {
			return Claims{}, fmt.Errorf("payload: %w", err)
		}
		var c Claims
		return c, json.Unmarshal(pb, &c)
	}
	return Claims{}, fmt.Errorf("no key %q in the key set", h.Kid)
}

// Receipt returns the receipt given out for event eventID of subjectID.
func (s *Service) Receipt(ctx context.Context, tenantID, subjectID, eventID string) (string, error) {
	var r string
	err := s.db.Read().QueryRow(ctx, "SELECT receipt FROM consent_events WHERE tenant_id = ? AND subject_id = ? AND id = ?",
		tenantID, subjectID, eventID).Scan(&r)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errs.E(errs.NotFound, "no such consent event")
	}
	return r, err
}
