package core

import (
	"context"
	"os"
	"path/filepath"

	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/sqldb"
)

// RecordPublicURL notes the URL this server answers under, so that the
// commands run beside it print links that work (custodia tenant create).
func (c *Core) RecordPublicURL(ctx context.Context, u string, now int64) error {
	return c.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO server_settings (name, value, updated_at) VALUES ('public_url', ?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, u, now)
		return err
	})
}

// RecordedPublicURL answers the URL a server of cfg's database last
// recorded, or "" when none has (or the database does not exist yet).
func RecordedPublicURL(ctx context.Context, cfg config.Config) string {
	if err := cfg.Validate(); err != nil {
		return ""
	}
	if cfg.DatabaseURL == "" {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "custodia.db")); err != nil {
			return "" // no database yet: opening would create one
		}
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return ""
	}
	defer db.Close()
	var u string
	_ = db.Read().QueryRow(ctx, "SELECT value FROM server_settings WHERE name = 'public_url'").Scan(&u)
	return u
}
