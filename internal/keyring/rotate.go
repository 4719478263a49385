package keyring

import (
	"context"
	"fmt"
	"strconv"

	"github.com/custodia/custodia/internal/sqldb"
)

// RotateResult says what a rotation did.
type RotateResult struct {
	Version   int // the KEK version now active
	Rewrapped int // subject keys re-wrapped under it
	Retired   []int
}

// Rotate gives the tenant a new KEK, re-wraps every subject key under it in
// small transactions, and deletes the old KEK versions once nothing refers
// to them. Servers keep working throughout: they read the active version per
// new key, and old versions stay until the last reference is gone. An
// interrupted rotation is resumed by calling Rotate again.
func (k *Keyring) Rotate(ctx context.Context, db *sqldb.DB, tenantID string, progress func(done int)) (RotateResult, error) {
	var res RotateResult
	err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, "SELECT version, state FROM tenant_keys WHERE tenant_id = ?"+db.ForUpdate(), tenantID)
		if err != nil {
			return err
		}
		defer rows.Close()
		maxVersion, active, retiring := 0, 0, 0
		for rows.Next() {
			var v int
			var state string
			if err := rows.Scan(&v, &state); err != nil {
				return err
			}
			maxVersion = max(maxVersion, v)
			if state == "active" {
				active = v
			} else {
				retiring++
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if maxVersion == 0 {
			return fmt.Errorf("tenant %s has no keys", tenantID)
		}
		if retiring > 0 { // resume an interrupted rotation
			res.Version = active
			return nil
		}
		next := maxVersion + 1
		kek := randomKey()
		wrapped, err := k.wrapTenant(ctx, tenantID, "kek", next, kek)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE tenant_keys SET state = 'retiring' WHERE tenant_id = ? AND state = 'active'", tenantID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_keys (tenant_id, version, state, wrapped, created_at)
			VALUES (?, ?, 'active', ?, ?)`, tenantID, next, wrapped, k.now().UnixMicro()); err != nil {
			return err
		}
		res.Version = next
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("start rotation: %w", err)
	}
	newKEK, err := k.kek(ctx, db.Read(), tenantID, res.Version)
	if err != nil {
		return res, err
	}
	for {
		n, err := k.rewrapBatch(ctx, db, tenantID, res.Version, newKEK, 500)
		if err != nil {
			return res, err
		}
		res.Rewrapped += n
		if progress != nil && n > 0 {
			progress(res.Rewrapped)
		}
		if n > 0 {
			continue
		}
		// Nothing left that we saw: retire the old versions. A subject key
		// written under an old version meanwhile makes the delete fail on the
		// foreign key, and we go round again.
		retired, err := k.retireOld(ctx, db, tenantID, res.Version)
		if sqldb.IsForeignKeyViolation(err) {
			continue
		}
		if err != nil {
			return res, err
		}
		res.Retired = retired
		return res, nil
	}
}

func (k *Keyring) rewrapBatch(ctx context.Context, db *sqldb.DB, tenantID string, to int, newKEK []byte, limit int) (int, error) {
	n := 0
	err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT subject_id, kek_version, wrapped FROM subject_keys
			WHERE tenant_id = ? AND kek_version <> ? LIMIT ?`, tenantID, to, limit)
		if err != nil {
			return err
		}
		type old struct {
			subjectID string
			version   int
			wrapped   []byte
		}
		var batch []old
		for rows.Next() {
			var o old
			if err := rows.Scan(&o.subjectID, &o.version, &o.wrapped); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, o := range batch {
			dk, err := k.unwrapDEK(ctx, tx.Q, tenantID, o.subjectID, o.version, o.wrapped)
			if err != nil {
				return err
			}
			wrapped := seal(newKEK, uint32(to), dekAD(tenantID, o.subjectID, to), dk.key)
			if _, err := tx.Exec(ctx, `UPDATE subject_keys SET kek_version = ?, wrapped = ?
				WHERE tenant_id = ? AND subject_id = ? AND kek_version = ?`, to, wrapped, tenantID, o.subjectID, o.version); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (k *Keyring) retireOld(ctx context.Context, db *sqldb.DB, tenantID string, keep int) ([]int, error) {
	var retired []int
	err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		retired = nil
		rows, err := tx.Query(ctx, "SELECT version FROM tenant_keys WHERE tenant_id = ? AND version <> ?", tenantID, keep)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			retired = append(retired, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM tenant_keys WHERE tenant_id = ? AND version <> ?", tenantID, keep)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	for _, v := range retired {
		delete(k.keks, tenantID+"/"+strconv.Itoa(v))
	}
	k.mu.Unlock()
	return retired, nil
}
