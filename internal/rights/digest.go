package rights

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
)

// The daily digest: once a day (in the tenant's time zone) every active
// owner and admin is mailed the requests that are overdue or due within
// seven days — by id, type and deadline, never by who asked.

const digestSection = "rights.digest"

// Digest mails the tenant's admins today's digest unless it went out
// today already or nothing is due; it answers how many mails it queued.
func (s *Service) Digest(ctx context.Context, tenantID string) (int, error) {
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	today := s.now().In(t.Location()).Format(time.DateOnly)
	var last string
	err = s.db.Read().QueryRow(ctx, "SELECT value FROM tenant_settings WHERE tenant_id = ? AND section = ?", tenantID, digestSection).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if last == today {
		return 0, nil
	}
	overdue, err := s.List(ctx, tenantID, Filter{Due: "overdue"})
	if err != nil {
		return 0, err
	}
	soon, err := s.List(ctx, tenantID, Filter{Due: "soon"})
	if err != nil {
		return 0, err
	}
	if len(overdue)+len(soon) == 0 {
		return 0, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\n%s has %d data-subject request(s) overdue and %d due within seven days.\n", t.Name, len(overdue), len(soon))
	for _, part := range []struct {
		title string
		rs    []Request
	}{{"Overdue", overdue}, {"Due soon", soon}} {
		if len(part.rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", part.title)
		for _, r := range part.rs {
			due := r.DueAt
			if r.ExtendedDueAt != nil {
				due = *r.ExtendedDueAt
			}
			fmt.Fprintf(&b, "  %s  %-16s due %s  (%s)\n", r.ID, r.Type, due.In(t.Location()).Format("2 Jan 2006 15:04 MST"), r.Status)
		}
	}
	b.WriteString("\nOpen them with GET /api/v1/requests/{id}.\n\n— Custodia\n")
	admins, err := s.admins(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	sent := 0
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		sent = 0
		// Only the first to mark today sends: another node may have
		// since the check above.
		res, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, section, value, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (tenant_id, section) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
			WHERE tenant_settings.value <> excluded.value`,
			tenantID, digestSection, today, s.now().UnixMicro())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errDigestSent
		}
		for _, subjectID := range admins {
			email, key, err := s.subjects.Email(ctx, tenantID, subjectID)
			if err != nil || email == "" {
				continue // an admin without an address, or erased meanwhile
			}
			if err := s.mail.Queue(ctx, tx, key, mail.Message{TenantID: tenantID, SubjectID: subjectID, Kind: "requests-digest", To: email,
				Subject: fmt.Sprintf("%s: %d request(s) overdue, %d due soon", t.Name, len(overdue), len(soon)), Text: b.String()}); err != nil {
				return err
			}
			sent++
		}
		return nil
	}, audit.Event{Action: "request.digest", TargetType: "tenant", TargetID: tenantID,
		Details: map[string]any{"overdue": len(overdue), "soon": len(soon), "recipients": len(admins)}})
	if errors.Is(err, errDigestSent) {
		return 0, nil
	}
	return sent, err
}

// errDigestSent stops a digest that another node sent first today.
var errDigestSent = errors.New("the digest went out today already")

// admins are the subject ids of the tenant's active owners and admins.
func (s *Service) admins(ctx context.Context, tenantID string) ([]string, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT subject_id FROM users WHERE tenant_id = ? AND role IN ('owner', 'admin') AND status = 'active' ORDER BY id", tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
