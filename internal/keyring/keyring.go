// Package keyring holds Custodia's key hierarchy and its encryption helpers.
//
//	master key (key file, or a KMS/Vault through gocloud.dev/secrets)
//	  └ tenant key-encryption key (KEK), versioned, wrapped by the master key
//	      └ subject data key (DEK), one per data subject, wrapped by a KEK
//	  └ tenant blind-index key and audit signing key, wrapped by the master key
//
// Every ciphertext is AES-256-GCM with a random 96-bit nonce and associated
// data binding it to tenant, table, column, row id and key version, so a
// ciphertext copied anywhere else does not open. Destroying a subject's DEK
// (crypto-shredding) makes every ciphertext of that person unreadable.
package keyring

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ErrKeyDestroyed is returned when a subject's data key no longer exists:
// the subject was erased (or never existed).
var ErrKeyDestroyed = &errs.Error{Kind: errs.Gone, Detail: "the data key of this subject has been destroyed"}

// Keyring unwraps and caches tenant keys and makes subject keys. It is safe
// for concurrent use.
type Keyring struct {
	master MasterKey
	now    func() time.Time

	mu      sync.RWMutex
	keks    map[string][]byte             // tenantID/version → KEK
	secrets map[string][]byte             // tenantID/name → secret
	signers map[string]ed25519.PrivateKey // tenantID/use → signing key, expanded once (a tenant's secrets never change)

	deks   *sqldb.Cache[subjectKeyID, *DataKey] // nil: subject keys are not cached
	active *sqldb.Cache[string, int]            // tenantID → version of its active key; nil with deks
}

// New returns a keyring over master.
func New(master MasterKey, now func() time.Time) *Keyring {
	return &Keyring{master: master, now: now, keks: map[string][]byte{}, secrets: map[string][]byte{}, signers: map[string]ed25519.PrivateKey{}}
}

const (
	secretIndex = "index"
	secretAudit = "audit-signing"
)

// wrapLabel binds a master-wrapped key to its tenant, purpose and version:
// the label is part of the wrapped plaintext and checked on unwrap, because
// KMS keepers take no associated data.
func wrapLabel(tenantID, purpose string, version int) []byte {
	return associatedData("custodia/v1 tenant key", tenantID, purpose, strconv.Itoa(version))
}

func (k *Keyring) wrapTenant(ctx context.Context, tenantID, purpose string, version int, key []byte) ([]byte, error) {
	pt := append(wrapLabel(tenantID, purpose, version), key...)
	return k.master.Encrypt(ctx, pt)
}

func (k *Keyring) unwrapTenant(ctx context.Context, tenantID, purpose string, version int, wrapped []byte) ([]byte, error) {
	pt, err := k.master.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap %s key of tenant %s: %w", purpose, tenantID, err)
	}
	label := wrapLabel(tenantID, purpose, version)
	if len(pt) < len(label) || !hmac.Equal(pt[:len(label)], label) {
		return nil, fmt.Errorf("unwrap %s key of tenant %s: %w", purpose, tenantID, ErrDecrypt)
	}
	return pt[len(label):], nil
}

// TenantKeys are a new tenant's keys, wrapped by the master key and ready
// to be stored: the first KEK, the blind-index key and the audit signing key.
type TenantKeys struct {
	tenantID            string
	kek, index, signing []byte
	signingPublic       ed25519.PublicKey
	createdAt           int64
}

// NewTenantKeys makes and wraps a new tenant's keys. It talks to the master
// key (perhaps a remote KMS), so call it before opening a transaction.
func (k *Keyring) NewTenantKeys(ctx context.Context, tenantID string) (*TenantKeys, error) {
	tk := &TenantKeys{tenantID: tenantID, createdAt: k.now().UnixMicro()}
	var err error
	if tk.kek, err = k.wrapTenant(ctx, tenantID, "kek", 1, randomKey()); err != nil {
		return nil, err
	}
	if tk.index, err = k.wrapTenant(ctx, tenantID, secretIndex, 1, randomKey()); err != nil {
		return nil, err
	}
	signing := ed25519.NewKeyFromSeed(randomKey())
	tk.signingPublic = signing.Public().(ed25519.PublicKey)
	if tk.signing, err = k.wrapTenant(ctx, tenantID, secretAudit, 1, signing.Seed()); err != nil {
		return nil, err
	}
	return tk, nil
}

// Insert stores the keys inside tx.
func (tk *TenantKeys) Insert(ctx context.Context, tx *sqldb.Tx) error {
	if _, err := tx.Exec(ctx, `INSERT INTO tenant_keys (tenant_id, version, state, wrapped, created_at)
		VALUES (?, 1, 'active', ?, ?)`, tk.tenantID, tk.kek, tk.createdAt); err != nil {
		return fmt.Errorf("insert tenant key: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tenant_secrets (tenant_id, name, wrapped, public, created_at)
		VALUES (?, ?, ?, NULL, ?), (?, ?, ?, ?, ?)`,
		tk.tenantID, secretIndex, tk.index, tk.createdAt,
		tk.tenantID, secretAudit, tk.signing, []byte(tk.signingPublic), tk.createdAt); err != nil {
		return fmt.Errorf("insert tenant secrets: %w", err)
	}
	return nil
}

func (k *Keyring) kek(ctx context.Context, q sqldb.Q, tenantID string, version int) ([]byte, error) {
	id := tenantID + "/" + strconv.Itoa(version)
	k.mu.RLock()
	key, ok := k.keks[id]
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	var wrapped []byte
	err := q.QueryRow(ctx, "SELECT wrapped FROM tenant_keys WHERE tenant_id = ? AND version = ?", tenantID, version).Scan(&wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("tenant %s has no key version %d", tenantID, version)
	}
	if err != nil {
		return nil, fmt.Errorf("load tenant key: %w", err)
	}
	if key, err = k.unwrapTenant(ctx, tenantID, "kek", version, wrapped); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.keks[id] = key
	k.mu.Unlock()
	return key, nil
}

func (k *Keyring) activeKEK(ctx context.Context, q sqldb.Q, tenantID string) (int, []byte, error) {
	cached := k.active != nil && !q.InTx()
	version, ok := 0, false
	if cached {
		version, ok = k.active.Get(ctx, tenantID)
	}
	if !ok {
		err := q.QueryRow(ctx, "SELECT version FROM tenant_keys WHERE tenant_id = ? AND state = 'active'", tenantID).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil, errs.E(errs.NotFound, "tenant not found")
		}
		if err != nil {
			return 0, nil, fmt.Errorf("find active tenant key: %w", err)
		}
		if cached {
			k.active.Put(ctx, tenantID, version)
		}
	}
	key, err := k.kek(ctx, q, tenantID, version)
	return version, key, err
}

func (k *Keyring) secret(ctx context.Context, q sqldb.Q, tenantID, name string) ([]byte, []byte, error) {
	id := tenantID + "/" + name
	k.mu.RLock()
	key, ok := k.secrets[id]
	k.mu.RUnlock()
	if ok {
		return key, nil, nil
	}
	var wrapped, public []byte
	err := q.QueryRow(ctx, "SELECT wrapped, public FROM tenant_secrets WHERE tenant_id = ? AND name = ?", tenantID, name).Scan(&wrapped, &public)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, errs.E(errs.NotFound, "tenant not found")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant secret: %w", err)
	}
	if key, err = k.unwrapTenant(ctx, tenantID, name, 1, wrapped); err != nil {
		return nil, nil, err
	}
	k.mu.Lock()
	k.secrets[id] = key
	k.mu.Unlock()
	return key, public, nil
}

// BlindIndex returns HMAC-SHA-256 under the tenant's index key of the already
// normalised value, domain-separated by field. Equal inputs give equal
// indexes within a tenant and unrelated ones across tenants.
func (k *Keyring) BlindIndex(ctx context.Context, q sqldb.Q, tenantID, field, normalized string) ([]byte, error) {
	key, _, err := k.secret(ctx, q, tenantID, secretIndex)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write(associatedData(field, normalized))
	return m.Sum(nil), nil
}

// AuditSigningKey returns the tenant's ed25519 audit signing key.
func (k *Keyring) AuditSigningKey(ctx context.Context, q sqldb.Q, tenantID string) (ed25519.PrivateKey, error) {
	return k.signer(tenantID+"/audit", func() ([]byte, error) {
		seed, _, err := k.secret(ctx, q, tenantID, secretAudit)
		return seed, err
	})
}

// signer answers the signing key kept under id, expanding it from the
// seed it is given the first time (an ed25519 key's expansion costs as
// much as a signature).
func (k *Keyring) signer(id string, seed func() ([]byte, error)) (ed25519.PrivateKey, error) {
	k.mu.RLock()
	key, ok := k.signers[id]
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	s, err := seed()
	if err != nil {
		return nil, err
	}
	key = ed25519.NewKeyFromSeed(s)
	k.mu.Lock()
	k.signers[id] = key
	k.mu.Unlock()
	return key, nil
}

// AuditPublicKey returns the public half of the tenant's audit signing key,
// read from the database without touching the master key.
func (k *Keyring) AuditPublicKey(ctx context.Context, q sqldb.Q, tenantID string) (ed25519.PublicKey, error) {
	var public []byte
	err := q.QueryRow(ctx, "SELECT public FROM tenant_secrets WHERE tenant_id = ? AND name = ?", tenantID, secretAudit).Scan(&public)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "tenant not found")
	}
	if err != nil {
		return nil, fmt.Errorf("load audit public key: %w", err)
	}
	if len(public) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("audit public key of tenant %s is malformed", tenantID)
	}
	return ed25519.PublicKey(public), nil
}

// MAC returns HMAC-SHA-256 over parts under a tenant key derived (HKDF) from
// the index key for purpose, for secrets that must be recognised but never
// stored: recovery codes, one-time links. Different purposes never share a
// key, and no MAC equals a blind index.
func (k *Keyring) MAC(ctx context.Context, q sqldb.Q, tenantID, purpose string, parts ...string) ([]byte, error) {
	index, _, err := k.secret(ctx, q, tenantID, secretIndex)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, index, nil, "custodia/v1 mac "+purpose, 32)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write(associatedData(parts...))
	return m.Sum(nil), nil
}

// TenantDataKey returns the tenant's key for data that belongs to the
// organisation rather than to one person but may still name people: group
// and space names, later folder and file names. It is derived (HKDF) from
// the index key, so it lives and dies with the tenant's other keys.
func (k *Keyring) TenantDataKey(ctx context.Context, q sqldb.Q, tenantID string) (*DataKey, error) {
	index, _, err := k.secret(ctx, q, tenantID, secretIndex)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, index, nil, "custodia/v1 tenant data", 32)
	if err != nil {
		return nil, err
	}
	return &DataKey{tenantID: tenantID, key: key}, nil
}

// ConsentSigningKey returns the tenant's ed25519 key for consent receipts,
// derived (HKDF) from the index key: stable across key rotations, and
// distinct from the audit signing key so that the two can be published
// and, one day, replaced apart.
func (k *Keyring) ConsentSigningKey(ctx context.Context, q sqldb.Q, tenantID string) (ed25519.PrivateKey, error) {
	return k.signer(tenantID+"/consent", func() ([]byte, error) {
		index, _, err := k.secret(ctx, q, tenantID, secretIndex)
		if err != nil {
			return nil, err
		}
		return hkdf.Key(sha256.New, index, nil, "custodia/v1 consent receipts", ed25519.SeedSize)
	})
}
