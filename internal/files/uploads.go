package files

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/segcrypt"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
)

// Resumable uploads. A session is opened for a path and a size; the
// content then comes in parts, each appended at the offset the session
// has reached and stored at once — sealed under the session's key, in the
// space's region — so a connection that breaks loses only the part it
// was sending. When the last byte arrives the parts are read in order into
// an ordinary upload (a new file or version, checked, audited as any) and
// the session goes with its parts. Sessions belong to whoever opened them,
// expire after UploadTTL without a part, and are cancelled by a move of
// the space to another region (their parts would stay behind).

// Limits of resumable uploads.
const (
	UploadTTL      = 24 * time.Hour // a session with no part for this long expires
	MaxOpenUploads = 20             // sessions a user may have open at once
)

// UploadSession is a resumable upload as its owner sees it.
type UploadSession struct {
	ID          string    `json:"id"`
	SpaceID     string    `json:"space_id"`
	Path        string    `json:"path"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	Offset      int64     `json:"offset"` // bytes received and stored
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// NewUpload opens a session: where the file goes and how big it is.
type NewUpload struct {
	Path        string `json:"path"`
	Size        *int64 `json:"size"`
	ContentType string `json:"content_type"`
	IfMatch     string `json:"if_match"` // the version the upload replaces, when set
}

type uploadRow struct {
	UploadSession
	ifMatch string
	parts   int
	key     []byte
}

// StartUpload opens a resumable upload of in.Size bytes to in.Path (an
// editor there, as for an upload).
func (s *Service) StartUpload(ctx context.Context, p identity.Principal, spaceID string, in NewUpload) (UploadSession, error) {
	names, err := SplitPath("path", in.Path)
	if err != nil {
		return UploadSession{}, err
	}
	found, err := s.locate(ctx, s.db.Read(), p, spaceID, names, space.Editor)
	if err != nil {
		return UploadSession{}, err
	}
	if len(names) == 0 || strings.HasSuffix(in.Path, "/") {
		return UploadSession{}, errs.Field("path", "name the file (a file's path does not end in '/')")
	}
	if len(found) == len(names) && found[len(found)-1].kind != File {
		return UploadSession{}, errs.E(errs.Conflict, "a folder is at this path")
	}
	if in.Size == nil || *in.Size < 0 {
		return UploadSession{}, errs.Field("size", "required: the file's size in bytes")
	}
	region, err := s.spaceRegion(ctx, s.db.Read(), p.TenantID, spaceID, "")
	if err != nil {
		return UploadSession{}, err
	}
	if _, err := s.store(region); err != nil {
		return UploadSession{}, err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return UploadSession{}, err
	}
	if _, err := s.room(ctx, t, found, names, *in.Size, ""); err != nil {
		return UploadSession{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return UploadSession{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return UploadSession{}, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return UploadSession{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	u := UploadSession{ID: id.String(), SpaceID: spaceID, Path: strings.Join(names, "/"), ContentType: contentType(in.ContentType),
		Size: *in.Size, CreatedAt: now, ExpiresAt: now.Add(UploadTTL)}
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var open int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM upload_sessions WHERE tenant_id = ? AND created_by = ? AND expires_at > ?",
			p.TenantID, p.UserID, now.UnixMicro()).Scan(&open); err != nil {
			return err
		}
		if open >= MaxOpenUploads {
			return errs.E(errs.Conflict, "you have %d uploads open; finish or cancel one first", open)
		}
		// The session reserves its size under the quota (checked again
		// here, where concurrent openings are serialised).
		if t.QuotaBytes > 0 {
			taken, err := s.taken(ctx, tx.Q, p.TenantID, "")
			if err != nil {
				return err
			}
			if taken+u.Size > t.QuotaBytes {
				return quotaError(t.QuotaBytes)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO upload_sessions (tenant_id, id, space_id, path_ct, content_type, if_match, size, key_ct, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.TenantID, u.ID, spaceID, dk.Seal("upload_sessions", "path_ct", u.ID, []byte(u.Path)),
			u.ContentType, in.IfMatch, u.Size, dk.Seal("upload_sessions", "key_ct", u.ID, key), p.UserID, now.UnixMicro(), u.ExpiresAt.UnixMicro())
		return err
	}, audit.Event{Action: "upload.start", TargetType: "space", TargetID: spaceID, Details: map[string]any{"upload_id": u.ID, "size": u.Size}})
	return u, err
}

// session finds p's live upload id, p being still an editor where it goes.
func (s *Service) session(ctx context.Context, p identity.Principal, id string) (uploadRow, error) {
	var u uploadRow
	var pathCT, keyCT []byte
	var created, expires int64
	err := s.db.Read().QueryRow(ctx, `SELECT space_id, path_ct, content_type, if_match, size, received, parts, key_ct, created_at, expires_at
		FROM upload_sessions WHERE tenant_id = ? AND id = ? AND created_by = ? AND expires_at > ?`, p.TenantID, id, p.UserID, s.now().UnixMicro()).
		Scan(&u.SpaceID, &pathCT, &u.ContentType, &u.ifMatch, &u.Size, &u.Offset, &u.parts, &keyCT, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return uploadRow{}, errs.E(errs.NotFound, "no such upload (it may have expired, finished or been cancelled)")
	}
	if err != nil {
		return uploadRow{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return uploadRow{}, err
	}
	path, err := dk.Open("upload_sessions", "path_ct", id, pathCT)
	if err != nil {
		return uploadRow{}, err
	}
	if u.key, err = dk.Open("upload_sessions", "key_ct", id, keyCT); err != nil {
		return uploadRow{}, err
	}
	u.ID, u.Path = id, string(path)
	u.CreatedAt, u.ExpiresAt = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC()
	if err := s.Need(ctx, p, u.SpaceID, u.Path, space.Editor); err != nil {
		return uploadRow{}, err
	}
	return u, nil
}

// Upload answers where p's upload id stands.
func (s *Service) Upload(ctx context.Context, p identity.Principal, id string) (UploadSession, error) {
	u, err := s.session(ctx, p, id)
	return u.UploadSession, err
}

// partData binds a part's segments to its session and place.
func partData(tenantID, id string, part int) []byte {
	return fmt.Appendf(nil, "custodia/v1 upload part %s/%s/%d", tenantID, id, part)
}

// Appended is what appending a part did: where the session stands, and
// once the last byte is in, the file it made.
type Appended struct {
	Session UploadSession
	Item    *Item // set when the upload is complete
	Created bool  // the upload made a new file (not a version)
}

// AppendUpload stores body (length bytes, -1 when unknown) as the next
// part of p's upload id, which must stand at offset; a body that breaks
// off stores nothing (send the part again). With the last byte — or an
// empty part at the end, to retry a completion that failed — the file is
// stored and the session ends.
func (s *Service) AppendUpload(ctx context.Context, p identity.Principal, id string, offset, length int64, body io.Reader) (Appended, error) {
	u, err := s.session(ctx, p, id)
	if err != nil {
		return Appended{}, err
	}
	if offset < 0 {
		return Appended{}, errs.Field("Upload-Offset", "required: the offset in the file this part starts at")
	}
	if offset != u.Offset {
		return Appended{Session: u.UploadSession}, errs.E(errs.Conflict, "the upload is at offset %d, not %d", u.Offset, offset)
	}
	left := u.Size - u.Offset
	if length > left {
		return Appended{}, errs.Field("body", "%d bytes would pass the upload's size (%d bytes left)", length, left)
	}
	if left > 0 {
		region, err := s.spaceRegion(ctx, s.db.Read(), p.TenantID, u.SpaceID, "")
		if err != nil {
			return Appended{}, err
		}
		st, err := s.store(region)
		if err != nil {
			return Appended{}, err
		}
		part := u.parts + 1
		attempt, err := uuid.NewV7()
		if err != nil {
			return Appended{}, err
		}
		// A blob of its own for each attempt: two parts sent at once for
		// the same offset must not write over each other (one is kept).
		key := fmt.Sprintf("%s/%s/upload-%s-%d-%s", p.TenantID, u.SpaceID, id, part, attempt)
		in := &counter{r: body, limit: left, over: errs.Field("body", "more bytes than the upload's size (%d bytes left)", left)}
		sealed, err := s.write(ctx, p.TenantID, st, key, u.key, partData(p.TenantID, id, part), in)
		if err != nil {
			return Appended{}, err
		}
		if in.n == 0 {
			s.discard(context.WithoutCancel(ctx), st, p.TenantID, key)
			return Appended{Session: u.UploadSession}, nil
		}
		// A part that arrived whole is kept even if the client is gone.
		cctx := context.WithoutCancel(ctx)
		now := s.now().UTC().Truncate(time.Microsecond)
		err = s.db.WithTx(cctx, func(ctx context.Context, tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, `UPDATE upload_sessions SET received = received + ?, parts = ?, expires_at = ?
				WHERE tenant_id = ? AND id = ? AND received = ? AND parts = ?`, in.n, part, now.Add(UploadTTL).UnixMicro(), p.TenantID, id, u.Offset, u.parts)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errs.E(errs.Conflict, "another part of this upload arrived meanwhile; ask where it stands")
			}
			if _, err := tx.Exec(ctx, `INSERT INTO upload_parts (tenant_id, session_id, part, region, blob_key, size, sealed_size) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				p.TenantID, id, part, region, key, in.n, sealed); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "DELETE FROM blob_intents WHERE region = ? AND blob_key = ?", region, key)
			return err
		})
		if err != nil {
			s.discard(cctx, st, p.TenantID, key)
			return Appended{}, err
		}
		u.Offset, u.parts, u.ExpiresAt = u.Offset+in.n, part, now.Add(UploadTTL)
	}
	if u.Offset < u.Size {
		return Appended{Session: u.UploadSession}, nil
	}
	// Every byte is in: the file is made even if the client has gone.
	it, created, err := s.completeUpload(context.WithoutCancel(ctx), p, u)
	if err != nil {
		return Appended{Session: u.UploadSession}, err
	}
	return Appended{Session: u.UploadSession, Item: &it, Created: created}, nil
}

// completeUpload reads u's parts in order into an upload of the file,
// then ends the session. One request at a time makes the file: another
// meanwhile is a Conflict (a claim older than staleAfter is taken over,
// after a crash); a failure frees the claim for a retry.
func (s *Service) completeUpload(ctx context.Context, p identity.Principal, u uploadRow) (Item, bool, error) {
	now := s.now().UnixMicro()
	claim := func(query string, args ...any) (bool, error) {
		var n int64
		err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, query, args...)
			if err == nil {
				n, _ = res.RowsAffected()
			}
			return err
		})
		return n == 1, err
	}
	ok, err := claim("UPDATE upload_sessions SET completing = ? WHERE tenant_id = ? AND id = ? AND completing < ?",
		now, p.TenantID, u.ID, now-staleAfter.Microseconds())
	if err != nil {
		return Item{}, false, err
	}
	if !ok {
		return Item{}, false, errs.E(errs.Conflict, "the file is being made from this upload already; ask where it stands")
	}
	it, created, err := s.assemble(ctx, p, u)
	if err != nil {
		if _, rerr := claim("UPDATE upload_sessions SET completing = 0 WHERE tenant_id = ? AND id = ? AND completing = ?", p.TenantID, u.ID, now); rerr != nil {
			s.logger.Error("free an upload for a retry; it can be retried once the claim is stale", "upload", u.ID, "error", rerr.Error())
		}
		return Item{}, false, err
	}
	return it, created, nil
}

// assemble reads u's parts in order into an upload of the file, then
// ends the session.
func (s *Service) assemble(ctx context.Context, p identity.Principal, u uploadRow) (Item, bool, error) {
	type part struct {
		n           int
		region, key string
		sealed      int64
	}
	rows, err := s.db.Read().Query(ctx, "SELECT part, region, blob_key, sealed_size FROM upload_parts WHERE tenant_id = ? AND session_id = ? ORDER BY part",
		p.TenantID, u.ID)
	if err != nil {
		return Item{}, false, err
	}
	var parts []part
	for rows.Next() {
		var pt part
		if err := rows.Scan(&pt.n, &pt.region, &pt.key, &pt.sealed); err != nil {
			rows.Close()
			return Item{}, false, err
		}
		parts = append(parts, pt)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Item{}, false, err
	}
	readers := make([]io.Reader, len(parts))
	var opened []io.Closer
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	for i, pt := range parts {
		readers[i] = &lazyReader{open: func() (io.Reader, error) {
			st, err := s.store(pt.region)
			if err != nil {
				return nil, err
			}
			f, err := segcrypt.Open(pt.sealed, u.key, partData(p.TenantID, u.ID, pt.n), func(off int64) (io.ReadCloser, error) {
				return st.Get(ctx, pt.key, off, -1)
			})
			if errs.Is(err, errs.NotFound) { // recorded but gone: not the client's doing
				return nil, fmt.Errorf("files: part %d of upload %s is missing from %s: %v", pt.n, u.ID, pt.region, err)
			}
			if err != nil {
				return nil, err
			}
			opened = append(opened, f)
			return f, nil
		}}
	}
	it, created, err := s.Put(ctx, p, u.SpaceID, Upload{Path: u.Path, ContentType: u.ContentType, Length: u.Size,
		Body: io.MultiReader(readers...), IfMatch: u.ifMatch, session: u.ID})
	if err != nil {
		return Item{}, false, err
	}
	if _, err := s.endUploads(context.WithoutCancel(ctx), p.TenantID, "id = ?", u.ID); err != nil {
		s.logger.Error("end a finished upload; its parts expire", "upload", u.ID, "error", err.Error())
	}
	return it, created, nil
}

// lazyReader opens what it reads at its first read.
type lazyReader struct {
	open func() (io.Reader, error)
	r    io.Reader
}

func (l *lazyReader) Read(b []byte) (int, error) {
	if l.r == nil {
		r, err := l.open()
		if err != nil {
			return 0, err
		}
		l.r = r
	}
	return l.r.Read(b)
}

// CancelUpload ends p's upload id and deletes what it received.
func (s *Service) CancelUpload(ctx context.Context, p identity.Principal, id string) error {
	u, err := s.session(ctx, p, id)
	if err != nil {
		return err
	}
	var blobs []blobRef
	err = s.log.Commit(ctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		blobs, _, err = s.dropUploads(ctx, tx, p.TenantID, "id = ?", id)
		return err
	}, audit.Event{Action: "upload.cancel", TargetType: "space", TargetID: u.SpaceID, Details: map[string]any{"upload_id": id, "received": u.Offset}})
	if err != nil {
		return err
	}
	s.discardAll(context.WithoutCancel(ctx), p.TenantID, blobs)
	return nil
}

// endUploads ends the tenant's sessions that match where (on
// upload_sessions): their rows go in one transaction that marks their
// parts for deletion, the parts after it. It answers how many ended.
func (s *Service) endUploads(ctx context.Context, tenantID, where string, args ...any) (int, error) {
	var blobs []blobRef
	var n int
	err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		blobs, n, err = s.dropUploads(ctx, tx, tenantID, where, args...)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.discardAll(context.WithoutCancel(ctx), tenantID, blobs)
	return n, nil
}

// dropUploads deletes inside tx the tenant's sessions that match where
// and their parts, marking the parts' blobs for deletion; it answers the
// blobs and how many sessions there were.
func (s *Service) dropUploads(ctx context.Context, tx *sqldb.Tx, tenantID, where string, args ...any) ([]blobRef, int, error) {
	ids, err := tx.Q.Strings(ctx, "SELECT id FROM upload_sessions WHERE tenant_id = ? AND "+where, append([]any{tenantID}, args...)...)
	if err != nil {
		return nil, 0, err
	}
	var blobs []blobRef
	for _, id := range ids {
		rows, err := tx.Query(ctx, "SELECT region, blob_key FROM upload_parts WHERE tenant_id = ? AND session_id = ?", tenantID, id)
		if err != nil {
			return nil, 0, err
		}
		for rows.Next() {
			var b blobRef
			if err := rows.Scan(&b.region, &b.key); err != nil {
				rows.Close()
				return nil, 0, err
			}
			blobs = append(blobs, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		for _, q := range []string{"DELETE FROM upload_parts WHERE tenant_id = ? AND session_id = ?", "DELETE FROM upload_sessions WHERE tenant_id = ? AND id = ?"} {
			if _, err := tx.Exec(ctx, q, tenantID, id); err != nil {
				return nil, 0, err
			}
		}
	}
	return blobs, len(ids), s.markDeleting(ctx, tx, tenantID, blobs)
}

// ExpireUploads ends the sessions that had no part for UploadTTL, and
// answers how many.
func (s *Service) ExpireUploads(ctx context.Context) (int, error) {
	now := s.now().UnixMicro()
	tenants, err := s.db.Read().Strings(ctx, "SELECT DISTINCT tenant_id FROM upload_sessions WHERE expires_at <= ?", now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tenants {
		k, err := s.endUploads(ctx, t, "expires_at <= ?", now)
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}
