package rights

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
)

// Delivery of an access or portability export: the requester is mailed a
// link to /privacy/{tenant}/download/{secret} that works once, for
// downloadTTL. The zip is made when the link is used (so it holds what is
// held then) and streamed, never stored; only the SHA-256 of the link's
// secret is kept, and the download is audited when it begins and, with
// the zip's SHA-256, when it has gone out whole.

const (
	downloadTTL   = 7 * 24 * time.Hour
	downloadLabel = "download-link"
)

// Delivery is what Deliver answers.
type Delivery struct {
	Request   Request   `json:"request"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Deliver mails the requester of access or portability request id a
// single-use link to their export, ends any earlier unused link of the
// request, and completes the request. It can be done again (say, after
// the link expired unused).
func (s *Service) Deliver(ctx context.Context, tenantID, id string) (Delivery, error) {
	cur, err := s.scan(s.db.Read().QueryRow(ctx, selectRequest+" WHERE tenant_id = ? AND id = ?", tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, errs.E(errs.NotFound, "no such request")
	}
	if err != nil {
		return Delivery{}, err
	}
	switch {
	case cur.Type != "access" && cur.Type != "portability":
		return Delivery{}, errs.E(errs.Conflict, "only an access or portability request is answered with a download")
	case cur.Status == Received || cur.Status == Rejected:
		return Delivery{}, errs.E(errs.Conflict, "the request is %s; deliver once it is verified", cur.Status)
	}
	email, key, err := s.subjects.Email(ctx, tenantID, cur.SubjectID)
	if err != nil {
		return Delivery{}, err
	}
	if email == "" {
		return Delivery{}, errs.E(errs.Conflict, "the person has no email address: download GET /api/v1/subjects/%s/export and hand it over", cur.SubjectID)
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Delivery{}, err
	}
	linkID, err := uuid.NewV7()
	if err != nil {
		return Delivery{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	expires := now.Add(downloadTTL)
	secret := keyring.NewSecret()
	link := fmt.Sprintf("%s/privacy/%s/download/%s", s.links, t.Slug, secret)
	details := map[string]any{"link_id": linkID.String(), "expires_at": expires.Format(time.RFC3339)}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE download_links SET expires_at = ? WHERE tenant_id = ? AND request_id = ? AND used_at = 0 AND expires_at > ?",
			now.UnixMicro(), tenantID, id, now.UnixMicro()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO download_links (tenant_id, id, token_hash, request_id, subject_id, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, tenantID, linkID.String(), keyring.HashSecret(downloadLabel, secret), id, cur.SubjectID,
			expires.UnixMicro(), now.UnixMicro()); err != nil {
			return err
		}
		if err := s.addEvent(ctx, tx, tenantID, id, cur.SubjectID, key, Event{Kind: "delivered", At: now}); err != nil {
			return err
		}
		if cur.Status != Completed {
			res, err := tx.Exec(ctx, "UPDATE data_requests SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND status = ?",
				Completed, now.UnixMicro(), tenantID, id, cur.Status)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errs.E(errs.Conflict, "the request changed meanwhile; read it again")
			}
			details["from"], details["to"] = cur.Status, Completed
			if err := s.addEvent(ctx, tx, tenantID, id, cur.SubjectID, key, Event{Kind: "status", FromStatus: cur.Status, ToStatus: Completed, At: now}); err != nil {
				return err
			}
		}
		return s.mail.Queue(ctx, tx, key, mail.Message{TenantID: tenantID, SubjectID: cur.SubjectID, Kind: "request-delivery", To: email,
			Subject: "Your personal data from " + t.Name,
			Text: fmt.Sprintf(`Hello,

%s answers your %s request of %s: a copy of the personal data it
holds about you, as a zip of JSON and CSV files, with what it uses it
for and why.

Download it here — the link works once, until %s (UTC):

%s

The zip is made when you download it, so it shows what is held then.
If the link has expired, reply and ask for a new one.

%s`, t.Name, strings.ReplaceAll(cur.Type, "_", " "), cur.ReceivedAt.In(t.Location()).Format("2 January 2006"),
				expires.Format("2 January 2006 15:04"), link, s.tenants.Footer(ctx, t))})
	}, audit.Event{Action: "request.deliver", TargetType: "request", TargetID: id, SubjectID: cur.SubjectID, Details: details})
	if err != nil {
		return Delivery{}, err
	}
	r, err := s.Get(ctx, tenantID, id)
	return Delivery{Request: r, ExpiresAt: expires}, err
}

// errDownloadLink answers a download link that is unknown, used or
// expired: all alike.
var errDownloadLink = errs.E(errs.Gone, "this download link is used or has expired; ask the organisation for a new one")

// Download is a live download link.
type Download struct {
	TenantID, ID, RequestID, SubjectID string
	Organisation                       string
	ExpiresAt                          time.Time
}

// FindDownload resolves the secret of a live download link of tenant slug.
func (s *Service) FindDownload(ctx context.Context, slug, secret string) (Download, error) {
	var d Download
	if !keyring.WellFormedSecret(secret) {
		return d, errDownloadLink
	}
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return d, errDownloadLink
	}
	var expires, used int64
	err = s.db.Read().QueryRow(ctx, "SELECT id, request_id, subject_id, expires_at, used_at FROM download_links WHERE token_hash = ? AND tenant_id = ?",
		keyring.HashSecret(downloadLabel, secret), t.ID).Scan(&d.ID, &d.RequestID, &d.SubjectID, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return d, errDownloadLink
	}
	if err != nil {
		return d, err
	}
	d.TenantID, d.Organisation, d.ExpiresAt = t.ID, t.Name, time.UnixMicro(expires).UTC()
	if used != 0 || !s.now().Before(d.ExpiresAt) {
		return d, errDownloadLink
	}
	return d, nil
}

// SpendDownload marks a download link used, before the zip is made: of
// concurrent downloads exactly one goes on. A download that fails after
// this costs the link (part of the zip may have gone out); the person
// asks for a new one.
func (s *Service) SpendDownload(ctx context.Context, d Download) error {
	now := s.now().UTC()
	return s.log.Commit(ctx, d.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE download_links SET used_at = ? WHERE tenant_id = ? AND id = ? AND used_at = 0 AND expires_at > ?",
			now.UnixMicro(), d.TenantID, d.ID, now.UnixMicro())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errDownloadLink
		}
		return nil
	}, audit.Event{Action: "request.download", TargetType: "request", TargetID: d.RequestID, SubjectID: d.SubjectID,
		Details: map[string]any{"link_id": d.ID}})
}

// Downloaded records that the zip of a spent link went out whole, with
// its SHA-256 and size: what was handed over can be proven later.
func (s *Service) Downloaded(ctx context.Context, d Download, sha256 string, size int64) error {
	return s.log.Record(ctx, d.TenantID, audit.Event{Action: "request.downloaded", TargetType: "request", TargetID: d.RequestID,
		SubjectID: d.SubjectID, Details: map[string]any{"link_id": d.ID, "sha256": sha256, "bytes": size}})
}
