package keyring

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/custodia/custodia/internal/sqldb"
)

// DataKey is one data subject's key. Everything personal about the subject
// is sealed with it.
type DataKey struct {
	tenantID  string
	subjectID string
	key       []byte
}

// dataKeyVersion is the version of subject data keys; they are re-wrapped on
// rotation, never replaced, so it is constant for now and recorded in every
// ciphertext so that a later re-keying can tell old from new.
const dataKeyVersion = 1

// SubjectID names the subject the key belongs to.
func (d *DataKey) SubjectID() string { return d.subjectID }

func (d *DataKey) ad(table, column, rowID string) []byte {
	return associatedData("custodia/v1 field", d.tenantID, table, column, rowID)
}

// Seal encrypts plaintext for table.column of row rowID.
func (d *DataKey) Seal(table, column, rowID string, plaintext []byte) []byte {
	return seal(d.key, dataKeyVersion, d.ad(table, column, rowID), plaintext)
}

// Open decrypts what Seal made for the same table, column and row; anything
// else (altered, moved or foreign ciphertext) gives ErrDecrypt.
func (d *DataKey) Open(table, column, rowID string, ciphertext []byte) ([]byte, error) {
	return open(d.key, d.ad(table, column, rowID), ciphertext)
}

// WrappedKey is a new subject key ready to be stored.
type WrappedKey struct {
	tenantID, subjectID string
	kekVersion          int
	wrapped             []byte
	createdAt           int64
}

func dekAD(tenantID, subjectID string, kekVersion int) []byte {
	return associatedData("custodia/v1 subject key", tenantID, subjectID, strconv.Itoa(kekVersion))
}

// NewSubjectKey makes a data key for a new subject, wrapped by the tenant's
// active KEK. Store it with Insert in the transaction that creates the subject.
func (k *Keyring) NewSubjectKey(ctx context.Context, q sqldb.Q, tenantID, subjectID string) (*DataKey, *WrappedKey, error) {
	keys, wrapped, err := k.NewSubjectKeys(ctx, q, tenantID, []string{subjectID})
	if err != nil {
		return nil, nil, err
	}
	return keys[0], wrapped[0], nil
}

// NewSubjectKeys makes the data keys of several new subjects (an import's
// chunk), all wrapped by the tenant's KEK active now: one query for them all.
func (k *Keyring) NewSubjectKeys(ctx context.Context, q sqldb.Q, tenantID string, subjectIDs []string) ([]*DataKey, []*WrappedKey, error) {
	version, kek, err := k.activeKEK(ctx, q, tenantID)
	if err != nil {
		return nil, nil, err
	}
	keys, wrapped := make([]*DataKey, len(subjectIDs)), make([]*WrappedKey, len(subjectIDs))
	for i, id := range subjectIDs {
		keys[i], wrapped[i] = k.newSubjectKey(tenantID, id, version, kek)
	}
	return keys, wrapped, nil
}

func (k *Keyring) newSubjectKey(tenantID, subjectID string, version int, kek []byte) (*DataKey, *WrappedKey) {
	dek := randomKey()
	w := &WrappedKey{
		tenantID: tenantID, subjectID: subjectID, kekVersion: version,
		wrapped:   seal(kek, uint32(version), dekAD(tenantID, subjectID, version), dek),
		createdAt: k.now().UnixMicro(),
	}
	return &DataKey{tenantID: tenantID, subjectID: subjectID, key: dek}, w
}

// Insert stores the wrapped key.
func (w *WrappedKey) Insert(ctx context.Context, tx *sqldb.Tx) error {
	return InsertKeys(ctx, tx, []*WrappedKey{w})
}

// InsertKeys stores wrapped keys, many rows a statement (an import).
func InsertKeys(ctx context.Context, tx *sqldb.Tx, ws []*WrappedKey) error {
	if err := tx.InsertRows(ctx, "subject_keys", keyColumns, keyRows(ws)); err != nil {
		return fmt.Errorf("insert subject keys: %w", err)
	}
	return nil
}

// Stmt is the statement that stores w, for a caller that sends it with
// its own (sqldb.Tx.Run: one round trip on PostgreSQL).
func (w *WrappedKey) Stmt() sqldb.Stmt {
	stmts, _ := sqldb.InsertStmts("subject_keys", keyColumns, keyRows([]*WrappedKey{w})) // one row of the right width: no error
	return stmts[0]
}

var keyColumns = []string{"tenant_id", "subject_id", "kek_version", "wrapped", "created_at"}

func keyRows(ws []*WrappedKey) [][]any {
	rows := make([][]any, len(ws))
	for i, w := range ws {
		rows[i] = []any{w.tenantID, w.subjectID, w.kekVersion, w.wrapped, w.createdAt}
	}
	return rows
}

// SubjectKey loads and unwraps a subject's data key. It returns
// ErrKeyDestroyed when the key does not exist.
//
// Outside a transaction, within a request that carries the database's
// epochs, keys come from the node's cache when CacheSubjectKeys turned it
// on: an erasure or a rotation (on any node) moves the subjects epoch, and
// the next request, or the sweep within a second, empties it.
func (k *Keyring) SubjectKey(ctx context.Context, q sqldb.Q, tenantID, subjectID string) (*DataKey, error) {
	cached := k.deks != nil && !q.InTx()
	id := subjectKeyID{tenantID, subjectID}
	if cached {
		if dk, ok := k.deks.Get(ctx, id); ok {
			return dk, nil
		}
	}
	dk, err := k.loadSubjectKey(ctx, q, tenantID, subjectID)
	if cached && err == nil {
		k.deks.Put(ctx, id, dk)
	}
	return dk, err
}

type subjectKeyID struct{ tenantID, subjectID string }

// CacheSubjectKeys keeps up to max unwrapped subject keys of db in memory
// (SubjectKey says when they are used).
// The version of each tenant's active key is kept the same way (a
// rotation moves the same epoch): a new subject's key is wrapped without
// asking.
func (k *Keyring) CacheSubjectKeys(db *sqldb.DB, max int) {
	k.deks = sqldb.NewCache[subjectKeyID, *DataKey](db, max, sqldb.FollowSubjects)
	k.active = sqldb.NewCache[string, int](db, 10_000, sqldb.FollowSubjects)
}

func (k *Keyring) loadSubjectKey(ctx context.Context, q sqldb.Q, tenantID, subjectID string) (*DataKey, error) {
	var version int
	var wrapped []byte
	err := q.QueryRow(ctx, "SELECT kek_version, wrapped FROM subject_keys WHERE tenant_id = ? AND subject_id = ?",
		tenantID, subjectID).Scan(&version, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrKeyDestroyed
	}
	if err != nil {
		return nil, fmt.Errorf("load subject key: %w", err)
	}
	return k.unwrapDEK(ctx, q, tenantID, subjectID, version, wrapped)
}

func (k *Keyring) unwrapDEK(ctx context.Context, q sqldb.Q, tenantID, subjectID string, version int, wrapped []byte) (*DataKey, error) {
	kek, err := k.kek(ctx, q, tenantID, version)
	if err != nil {
		return nil, err
	}
	dek, err := open(kek, dekAD(tenantID, subjectID, version), wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap subject key: %w", err)
	}
	return &DataKey{tenantID: tenantID, subjectID: subjectID, key: dek}, nil
}

// DestroySubjectKey deletes a subject's data key inside tx (crypto-shredding),
// and forgets it on this node at once (other nodes at their next request,
// or sweep: the deletion moves the subjects epoch).
func (k *Keyring) DestroySubjectKey(ctx context.Context, tx *sqldb.Tx, tenantID, subjectID string) error {
	if k.deks != nil {
		k.deks.Delete(subjectKeyID{tenantID, subjectID})
	}
	_, err := tx.Exec(ctx, "DELETE FROM subject_keys WHERE tenant_id = ? AND subject_id = ?", tenantID, subjectID)
	return err
}
