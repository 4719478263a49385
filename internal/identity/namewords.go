package identity

import (
	"context"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/sqldb"
)

// Finding people by name: each word of a name is kept as a blind index
// (user_name_words), never the name; a search matches whole words, in any
// case and order.

// maxNameWords bounds the words of a name that are indexed.
const maxNameWords = 10

// nameWords answers the words of name as a search matches them: NFKC, lower
// case, split at anything that is neither a letter nor a digit.
func nameWords(name string) []string {
	fields := strings.FieldsFunc(strings.ToLower(norm.NFKC.String(name)), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	seen := map[string]bool{}
	var out []string
	for _, f := range fields {
		if !seen[f] && len(out) < maxNameWords {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// nameIndexes answers the blind indexes of the words of name.
func (s *Service) nameIndexes(ctx context.Context, tenantID, name string) ([][]byte, error) {
	var out [][]byte
	for _, w := range nameWords(name) {
		b, err := s.keys.BlindIndex(ctx, s.db.Read(), tenantID, "name_word", w)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// setNameWords replaces the indexed words of userID's name in tx.
func setNameWords(ctx context.Context, tx *sqldb.Tx, tenantID, userID string, words [][]byte) error {
	if _, err := tx.Exec(ctx, "DELETE FROM user_name_words WHERE tenant_id = ? AND user_id = ?", tenantID, userID); err != nil {
		return err
	}
	for _, w := range words {
		if _, err := tx.Exec(ctx, "INSERT INTO user_name_words (tenant_id, user_id, word_bidx) VALUES (?, ?, ?)", tenantID, userID, w); err != nil {
			return err
		}
	}
	return nil
}

// indexName keeps the words of u's name, as their person holds it now.
func (s *Service) indexName(ctx context.Context, tenantID string, u User) error {
	prof, err := s.subjects.Profile(ctx, tenantID, u.SubjectID)
	if err != nil {
		return err
	}
	words, err := s.nameIndexes(ctx, tenantID, prof.Name)
	if err != nil {
		return err
	}
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return setNameWords(ctx, tx, tenantID, u.ID, words)
	})
}

// IndexNames indexes the names of every account of every tenant that has
// a name and no indexed words — those made before names were indexed. It
// runs at start-up and does nothing once every name is indexed.
func (s *Service) IndexNames(ctx context.Context) error {
	var done int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM server_settings WHERE name = 'name_words'").Scan(&done); err != nil || done > 0 {
		return err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT tenant_id, `+userColumns+` FROM users u
		WHERE NOT EXISTS (SELECT 1 FROM user_name_words w WHERE w.tenant_id = u.tenant_id AND w.user_id = u.id)`)
	if err != nil {
		return err
	}
	type pending struct {
		tenant string
		u      User
	}
	var todo []pending
	for rows.Next() {
		var p pending
		if p.u, err = scanUser(prefixed{rows, &p.tenant}); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range todo {
		if err := s.indexName(ctx, p.tenant, p.u); err != nil {
			return err
		}
	}
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO server_settings (name, value, updated_at) VALUES ('name_words', 'indexed', ?)
			ON CONFLICT (name) DO NOTHING`, s.now().UnixMicro())
		return err
	})
}

// prefixed scans a leading column into first, then the rest with a
// scanner of its own.
type prefixed struct {
	row   interface{ Scan(...any) error }
	first *string
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append([]any{p.first}, dest...)...) }
