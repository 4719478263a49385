package files

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/segcrypt"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/tenant"
)

// Version is one stored version of a file.
type Version struct {
	ID          string    `json:"id"`
	Version     int       `json:"version"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	Region      string    `json:"region"`
	Current     bool      `json:"current"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
}

// versionRow is a row of file_versions.
type versionRow struct {
	id, nodeID, spaceID string
	version             int
	region, blobKey     string
	size, sealedSize    int64
	contentType         string
	keyCT, sumCT        []byte
	createdBy           string
	createdAt           int64
}

const versionCols = "id, node_id, space_id, version, region, blob_key, size, sealed_size, content_type, key_ct, sha256_ct, created_by, created_at"

func scanVersion(row interface{ Scan(...any) error }) (versionRow, error) {
	var v versionRow
	err := row.Scan(&v.id, &v.nodeID, &v.spaceID, &v.version, &v.region, &v.blobKey, &v.size, &v.sealedSize, &v.contentType, &v.keyCT, &v.sumCT, &v.createdBy, &v.createdAt)
	return v, err
}

func (s *Service) version(ctx context.Context, q sqldb.Q, tenantID, nodeID string, version int) (versionRow, error) {
	v, err := scanVersion(q.QueryRow(ctx, "SELECT "+versionCols+" FROM file_versions WHERE tenant_id = ? AND node_id = ? AND version = ?", tenantID, nodeID, version))
	if errors.Is(err, sql.ErrNoRows) {
		return versionRow{}, errs.E(errs.NotFound, "no such version")
	}
	return v, err
}

// associatedData binds a blob's segments to its file and version.
func associatedData(tenantID, nodeID, versionID string) []byte {
	return []byte("custodia/v1 file " + tenantID + "/" + nodeID + "/" + versionID)
}

// Upload is content to store at a path.
type Upload struct {
	Path        string
	ContentType string
	Length      int64     // -1 when unknown
	Body        io.Reader // read to its end, or until it fails
	IfMatch     string    // when set, the id of the version the upload replaces

	session string // the resumable upload this completes: its reservation is its own room
}

// Put stores u as a new file or a new version of the file at its path,
// making missing folders above it. It answers the item and whether it was
// created. Until the version is committed nothing refers to the blob, and
// a failure — the body breaking off, the quota, the region — leaves none.
func (s *Service) Put(ctx context.Context, p identity.Principal, spaceID string, u Upload) (Item, bool, error) {
	names, err := SplitPath("path", u.Path)
	if err != nil {
		return Item{}, false, err
	}
	if len(names) == 0 || strings.HasSuffix(u.Path, "/") {
		return Item{}, false, errs.Field("path", "name the file (a file's path does not end in '/')")
	}
	// Where it goes: an existing file gets a new version, else a new file.
	found, err := s.locate(ctx, s.db.Read(), p, spaceID, names, space.Editor)
	if err != nil {
		return Item{}, false, err
	}
	region, err := s.spaceRegion(ctx, s.db.Read(), p.TenantID, spaceID, "")
	if err != nil {
		return Item{}, false, err
	}
	st, err := s.store(region)
	if err != nil {
		return Item{}, false, err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return Item{}, false, err
	}
	room, err := s.room(ctx, t, found, names, u.Length, u.session)
	if err != nil {
		return Item{}, false, err
	}
	nodeID, created := "", len(found) < len(names)
	if !created {
		n := found[len(found)-1]
		if n.kind != File {
			return Item{}, false, errs.E(errs.Conflict, "a folder is at this path")
		}
		nodeID = n.id
	} else {
		id, err := uuid.NewV7()
		if err != nil {
			return Item{}, false, err
		}
		nodeID = id.String()
	}
	vid, err := uuid.NewV7()
	if err != nil {
		return Item{}, false, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Item{}, false, err
	}
	v := versionRow{id: vid.String(), nodeID: nodeID, spaceID: spaceID, region: region,
		blobKey: p.TenantID + "/" + spaceID + "/" + vid.String(), contentType: contentType(u.ContentType), createdBy: p.UserID}
	sum := sha256.New()
	body := &counter{r: u.Body, limit: room, quota: t.QuotaBytes, h: sum}
	v.sealedSize, err = s.write(ctx, p.TenantID, st, v.blobKey, key, associatedData(p.TenantID, nodeID, v.id), body)
	if err != nil {
		return Item{}, false, err
	}
	v.size = body.n
	if u.Length >= 0 && v.size != u.Length {
		s.discard(context.WithoutCancel(ctx), st, p.TenantID, v.blobKey)
		return Item{}, false, errs.Field("Content-Length", "the body had %d bytes, not the %d announced", v.size, u.Length)
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		s.discard(context.WithoutCancel(ctx), st, p.TenantID, v.blobKey)
		return Item{}, false, err
	}
	v.keyCT = dk.Seal("file_versions", "key_ct", v.id, key)
	v.sumCT = dk.Seal("file_versions", "sha256_ct", v.id, sum.Sum(nil))
	now := s.now().UTC().Truncate(time.Microsecond)
	v.createdAt = now.UnixMicro()
	ev := audit.Event{Action: "file.upload", TargetType: "file", TargetID: nodeID,
		Details: map[string]any{"space_id": spaceID, "version_id": v.id, "size": v.size, "region": region, "created": created}}
	// The commit must not be abandoned halfway by a client going away:
	// once the blob is whole, the version is recorded or the blob deleted.
	cctx := context.WithoutCancel(ctx)
	var pruned []blobRef
	err = s.log.Commit(cctx, p.TenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		// The space may have started moving while the blob was written.
		if now, err := s.spaceRegion(ctx, tx.Q, p.TenantID, spaceID, s.db.ForUpdate()); err != nil {
			return err
		} else if now != region {
			return errs.E(errs.Conflict, "the space moved to %s while the file was uploaded; upload again", now)
		}
		parent, _, err := s.ensureFolders(ctx, tx, dk, p, spaceID, names[:len(names)-1], v.createdAt)
		if err != nil {
			return err
		}
		n, exists, err := s.child(ctx, tx.Q, p.TenantID, spaceID, parent, names[len(names)-1])
		if err != nil {
			return err
		}
		switch {
		case exists && n.id != nodeID || !exists && !created:
			return errs.E(errs.Conflict, "the file at this path changed while it was uploaded; upload again")
		case exists && n.kind != File:
			return errs.E(errs.Conflict, "a folder is at this path")
		case exists:
			if u.IfMatch != "" {
				cur, err := s.version(ctx, tx.Q, p.TenantID, n.id, n.version)
				if err != nil {
					return err
				}
				if cur.id != u.IfMatch {
					return errs.E(errs.Conflict, "the file has a newer version than If-Match names")
				}
			}
			if err := tx.QueryRow(ctx, "UPDATE nodes SET version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING version",
				v.createdAt, p.TenantID, n.id).Scan(&v.version); err != nil {
				return err
			}
		default:
			if u.IfMatch != "" {
				return errs.E(errs.Conflict, "no file at this path to match If-Match")
			}
			if err := s.insertNodeID(ctx, tx, dk, p, nodeID, spaceID, parent, File, names[len(names)-1], v.createdAt); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE nodes SET version = 1 WHERE tenant_id = ? AND id = ?", p.TenantID, nodeID); err != nil {
				return err
			}
			v.version = 1
		}
		// The tenant keeps the newest versions_kept versions, this one
		// among them: older ones go before the quota is checked.
		if k := t.VersionsKept; k > 0 && v.version > k {
			if pruned, _, err = s.pruneVersions(ctx, tx, p.TenantID, nodeID, v.version-k); err != nil {
				return err
			}
			ev.Details["versions_pruned"] = len(pruned)
		}
		if t.QuotaBytes > 0 {
			used, err := s.taken(ctx, tx.Q, p.TenantID, u.session)
			if err != nil {
				return err
			}
			if used+v.size > t.QuotaBytes {
				return quotaError(t.QuotaBytes)
			}
		}
		ev.Details["version"] = v.version
		return s.insertVersion(ctx, tx, p.TenantID, v)
	}, ev)
	if err != nil {
		s.discard(cctx, st, p.TenantID, v.blobKey)
		return Item{}, false, err
	}
	s.discardAll(cctx, p.TenantID, pruned)
	it, err := s.Stat(cctx, p, spaceID, strings.Join(names, "/"))
	return it, created, err
}

// room is how many bytes a new version at names (found as far as it
// exists) may take under the tenant's quota (-1: no bound), counting the
// room freed by the versions it pushes out; announced bytes that do not
// fit are a quota error.
func (s *Service) room(ctx context.Context, t tenant.Tenant, found []node, names []string, announced int64, session string) (int64, error) {
	if t.QuotaBytes <= 0 {
		return -1, nil
	}
	used, err := s.taken(ctx, s.db.Read(), t.ID, session)
	if err != nil {
		return 0, err
	}
	if len(found) == len(names) && len(found) > 0 && found[len(found)-1].kind == File && t.VersionsKept > 0 {
		n := found[len(found)-1]
		_, freed, err := versionBlobs(ctx, s.db.Read(), "tenant_id = ? AND node_id = ? AND version <= ?", t.ID, n.id, n.version+1-t.VersionsKept)
		if err != nil {
			return 0, err
		}
		used -= freed
	}
	if room := t.QuotaBytes - used; room >= 0 && announced <= room {
		return room, nil
	}
	return 0, quotaError(t.QuotaBytes)
}

func quotaError(quota int64) error {
	return &errs.Error{Kind: errs.TooLarge, Field: "body", Detail: fmt.Sprintf("this would exceed the organisation's storage quota of %d bytes", quota)}
}

// used is the bytes of every stored version of the tenant's files.
func (s *Service) used(ctx context.Context, q sqldb.Q, tenantID string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, "SELECT COALESCE(SUM(size), 0) FROM file_versions WHERE tenant_id = ?", tenantID).Scan(&n)
	return n, err
}

// taken is what counts against the tenant's quota: every stored version,
// and the declared size of every resumable upload under way (but the one
// named by except) — reserved when it opens, released when it completes,
// is cancelled or expires — so that parts on the disk never exceed it.
func (s *Service) taken(ctx context.Context, q sqldb.Q, tenantID, except string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT
		(SELECT COALESCE(SUM(size), 0) FROM file_versions WHERE tenant_id = ?) +
		(SELECT COALESCE(SUM(size), 0) FROM upload_sessions WHERE tenant_id = ? AND id <> ? AND expires_at > ?)`,
		tenantID, tenantID, except, s.now().UnixMicro()).Scan(&n)
	return n, err
}

// insertVersion records v and ends the blob's intent, inside tx.
func (s *Service) insertVersion(ctx context.Context, tx *sqldb.Tx, tenantID string, v versionRow) error {
	if _, err := tx.Exec(ctx, "INSERT INTO file_versions ("+versionCols+", tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		v.id, v.nodeID, v.spaceID, v.version, v.region, v.blobKey, v.size, v.sealedSize, v.contentType, v.keyCT, v.sumCT, v.createdBy, v.createdAt, tenantID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "DELETE FROM blob_intents WHERE region = ? AND blob_key = ?", v.region, v.blobKey)
	return err
}

// counter counts and hashes (when h is set) what is read through it and
// fails once more than limit bytes (when limit >= 0) have come: with over,
// or else a quota error.
type counter struct {
	r     io.Reader
	n     int64
	limit int64
	quota int64
	h     hash.Hash
	over  error
}

func (c *counter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	if c.h != nil {
		c.h.Write(p[:k])
	}
	if c.limit >= 0 && c.n > c.limit {
		if c.over != nil {
			return k, c.over
		}
		return k, quotaError(c.quota)
	}
	return k, err
}

// store is the blob store of region; a region the operator no longer
// configures is unavailable, never a reason to write elsewhere.
func (s *Service) store(region string) (*blobstore.Store, error) {
	st, err := s.regions.Store(region)
	if err != nil {
		return nil, &errs.Error{Kind: errs.Unavailable, Detail: "the region " + region + " of this space is not configured on this server", Err: err}
	}
	return st, nil
}

// errAbandoned ends a fill whose blob write stopped early.
var errAbandoned = errors.New("files: the blob write stopped")

// write stores in st at blobKey what r holds, sealed (segcrypt) under key
// with associated data ad, announcing the blob first and keeping the
// announcement fresh while it is written. It answers the sealed size. On
// failure the blob is deleted (or left to the sweeper) and the error
// returned.
func (s *Service) write(ctx context.Context, tenantID string, st *blobstore.Store, blobKey string, key, ad []byte, r io.Reader) (int64, error) {
	fill := func(w io.Writer) error {
		sw, err := segcrypt.NewWriter(w, key, ad)
		if err != nil {
			return err
		}
		if _, err := io.Copy(sw, r); err != nil {
			return err
		}
		return sw.Close()
	}
	if err := s.intend(ctx, tenantID, st.Region, blobKey, "writing"); err != nil {
		return 0, err
	}
	stop := s.heartbeat(st.Region, blobKey)
	pr, pw := io.Pipe()
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		pw.CloseWithError(fill(pw))
	}()
	n, err := st.Put(ctx, blobKey, pr)
	pr.CloseWithError(errAbandoned)
	<-filled
	stop()
	if err != nil {
		s.discard(context.WithoutCancel(ctx), st, tenantID, blobKey)
		return 0, err
	}
	return n, nil
}

// intend announces a blob about to be written or deleted.
func (s *Service) intend(ctx context.Context, tenantID, region, key, state string) error {
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO blob_intents (region, blob_key, tenant_id, state, touched_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (region, blob_key) DO UPDATE SET state = excluded.state, touched_at = excluded.touched_at`,
			region, key, tenantID, state, s.now().UnixMicro())
		return err
	})
}

// heartbeatEvery is how often a live write refreshes its announcement;
// the sweeper leaves writes alone that refreshed within staleAfter.
const (
	heartbeatEvery = 30 * time.Second
	staleAfter     = 15 * time.Minute
)

func (s *Service) heartbeat(region, key string) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = s.db.WithTx(context.Background(), func(ctx context.Context, tx *sqldb.Tx) error {
					_, err := tx.Exec(context.Background(), "UPDATE blob_intents SET touched_at = ? WHERE region = ? AND blob_key = ?", s.now().UnixMicro(), region, key)
					return err
				})
			}
		}
	}()
	return func() { close(done) }
}

// discard deletes a blob and whatever a broken write left beside it, then
// its announcement; when the store fails the announcement stays, marked
// for deletion, for the sweeper.
func (s *Service) discard(ctx context.Context, st *blobstore.Store, tenantID, key string) {
	if s.held(ctx) { // a backup is copying content: the sweeper deletes it after
		_ = s.intend(ctx, tenantID, st.Region, key, "deleting")
		return
	}
	err := st.Delete(ctx, key)
	if err == nil {
		err = st.List(ctx, key+".", func(o blobstore.Object) error {
			if strings.HasSuffix(o.Key, ".tmp") { // a file region's partial write
				return st.Delete(ctx, o.Key)
			}
			return nil
		})
	}
	if err != nil {
		s.logger.Warn("blob not deleted yet; the sweeper will retry", "region", st.Region, "blob", key, "error", err.Error())
		_ = s.intend(ctx, tenantID, st.Region, key, "deleting")
		return
	}
	_ = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM blob_intents WHERE region = ? AND blob_key = ?", st.Region, key)
		return err
	})
}

// held reports whether a backup is copying file content now (a row of
// blob_holds, package backup): deletions wait, as the sweeper's work,
// until it is done, so a backup never misses content its snapshot refers
// to. In doubt (the database fails), it is held.
func (s *Service) held(ctx context.Context) bool {
	var n int
	err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM blob_holds WHERE until_at > ?", s.now().UnixMicro()).Scan(&n)
	return err != nil || n > 0
}

// Sweep deletes the blobs of announcements left behind: writes that
// stopped refreshing (a crash), and deletions that failed or waited for a
// backup — and, in local regions, the temporary files of writes a crash
// cut short. It answers how many blobs it finished.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	for _, name := range s.regions.Names() {
		if st, err := s.regions.Store(name); err == nil {
			if _, err := st.SweepTemp(ctx, staleAfter); err != nil {
				s.logger.Warn("sweep temporary files", "region", name, "err", err.Error())
			}
		}
	}
	if s.held(ctx) {
		return 0, nil
	}
	stale := s.now().Add(-staleAfter).UnixMicro()
	rows, err := s.db.Read().Query(ctx, `SELECT region, blob_key, tenant_id FROM blob_intents
		WHERE state = 'deleting' OR touched_at < ? ORDER BY touched_at LIMIT 1000`, stale)
	if err != nil {
		return 0, err
	}
	type intent struct{ region, key, tenant string }
	var todo []intent
	for rows.Next() {
		var i intent
		if err := rows.Scan(&i.region, &i.key, &i.tenant); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	done := 0
	for _, i := range todo {
		st, err := s.regions.Store(i.region)
		if err != nil {
			continue // a region no longer configured: nothing can be done here
		}
		var one int
		err = s.db.Read().QueryRow(ctx, "SELECT 1 FROM file_versions WHERE region = ? AND blob_key = ?", i.region, i.key).Scan(&one)
		if err == nil { // committed after all: keep the blob, end the announcement
			_ = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "DELETE FROM blob_intents WHERE region = ? AND blob_key = ?", i.region, i.key)
				return err
			})
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return done, err
		}
		s.discard(ctx, st, i.tenant, i.key)
		var left int
		if s.db.Read().QueryRow(ctx, "SELECT COUNT(*) FROM blob_intents WHERE region = ? AND blob_key = ?", i.region, i.key).Scan(&left) == nil && left == 0 {
			done++
		}
	}
	return done, nil
}

// Content is an open version of a file: seek and read the plaintext.
type Content struct {
	Item    Item
	Version Version
	*segcrypt.File
}

// Open opens the current version of the file at path, or version n when
// n > 0, for reading, and audits the read.
func (s *Service) Open(ctx context.Context, p identity.Principal, spaceID, path string, n int) (*Content, error) {
	names, err := SplitPath("path", path)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errs.Field("path", "name a file")
	}
	nd, err := s.itemAt(ctx, p, spaceID, names, space.Viewer)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, p, nd, strings.Join(names, "/"), n)
}

// OpenVersion is Open for a file named by id.
func (s *Service) OpenVersion(ctx context.Context, p identity.Principal, fileID string, n int) (*Content, error) {
	nd, pl, err := s.fileByID(ctx, p, fileID, space.Viewer)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, p, nd, pl.path, n)
}

func (s *Service) open(ctx context.Context, p identity.Principal, nd node, path string, n int) (*Content, error) {
	if nd.kind != File {
		return nil, errs.Field("path", "a folder has no content; list it instead")
	}
	if n <= 0 {
		n = nd.version
	}
	v, err := s.version(ctx, s.db.Read(), p.TenantID, nd.id, n)
	if err != nil {
		return nil, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return nil, err
	}
	f, err := s.openBlob(ctx, dk, p.TenantID, v)
	if err != nil {
		return nil, err
	}
	it, err := s.item(dk, nd, path, &v)
	if err != nil {
		f.Close()
		return nil, err
	}
	ver, err := publicVersion(dk, v, nd.version)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := s.log.Record(ctx, p.TenantID, audit.Event{Action: "file.read", TargetType: "file", TargetID: nd.id,
		Details: map[string]any{"space_id": nd.spaceID, "version": v.version}}); err != nil {
		f.Close()
		return nil, err
	}
	return &Content{Item: it, Version: ver, File: f}, nil
}

// openBlob opens a version's sealed blob.
func (s *Service) openBlob(ctx context.Context, dk *keyring.DataKey, tenantID string, v versionRow) (*segcrypt.File, error) {
	st, err := s.store(v.region)
	if err != nil {
		return nil, err
	}
	key, err := dk.Open("file_versions", "key_ct", v.id, v.keyCT)
	if err != nil {
		return nil, err
	}
	f, err := segcrypt.Open(v.sealedSize, key, associatedData(tenantID, v.nodeID, v.id), func(off int64) (io.ReadCloser, error) {
		return st.Get(ctx, v.blobKey, off, -1)
	})
	if errors.Is(err, segcrypt.ErrCorrupt) {
		return nil, corrupt(v, err)
	}
	return f, err
}

// corrupt reports content that does not open: changed or cut in the store.
func corrupt(v versionRow, err error) error {
	return &errs.Error{Kind: errs.Internal, Detail: "the stored content of this file fails its integrity check",
		Err: fmt.Errorf("version %s in region %s: %w", v.id, v.region, err)}
}

func publicVersion(dk *keyring.DataKey, v versionRow, current int) (Version, error) {
	sum, err := dk.Open("file_versions", "sha256_ct", v.id, v.sumCT)
	if err != nil {
		return Version{}, err
	}
	return Version{ID: v.id, Version: v.version, Size: v.size, ContentType: v.contentType, SHA256: hex.EncodeToString(sum),
		Region: v.region, Current: v.version == current, CreatedBy: v.createdBy, CreatedAt: time.UnixMicro(v.createdAt).UTC()}, nil
}

// fileByID finds a live item by id that p holds want on, and where it is.
func (s *Service) fileByID(ctx context.Context, p identity.Principal, id, want string) (node, place, error) {
	nd, err := scanNode(s.db.Read().QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND id = ? AND trashed_at = 0", p.TenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return node{}, place{}, errs.E(errs.NotFound, "no such file")
	}
	if err != nil {
		return node{}, place{}, err
	}
	pl, err := s.placeOf(ctx, p.TenantID, nd)
	if err != nil {
		return node{}, place{}, err
	}
	if _, err := s.spaces.NeedIn(ctx, p, scopeOf(nd.spaceID, pl.chain), want); err != nil {
		if errs.Is(err, errs.NotFound) {
			return node{}, place{}, errs.E(errs.NotFound, "no such file")
		}
		return node{}, place{}, err
	}
	if !pl.live {
		return node{}, place{}, errs.E(errs.NotFound, "no such file (it is in a folder in the trash)")
	}
	return nd, pl, nil
}

// place is where an item is: the items from the top of its space down to
// it, its path, and whether every folder above it is live.
type place struct {
	chain []node
	path  string
	live  bool
}

// placeOf finds where n is, by its parents.
func (s *Service) placeOf(ctx context.Context, tenantID string, n node) (place, error) {
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), tenantID)
	if err != nil {
		return place{}, err
	}
	pl := place{chain: []node{n}, live: true}
	for n.parentID != "" && len(pl.chain) <= MaxDepth+1 {
		if n, err = scanNode(s.db.Read().QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND id = ?", tenantID, n.parentID)); err != nil {
			return place{}, err
		}
		pl.live = pl.live && n.trashedAt == 0
		pl.chain = append(pl.chain, n)
	}
	slices.Reverse(pl.chain)
	names := make([]string, len(pl.chain))
	for i, c := range pl.chain {
		name, err := dk.Open("nodes", "name_ct", c.id, c.nameCT)
		if err != nil {
			return place{}, err
		}
		names[i] = string(name)
	}
	pl.path = strings.Join(names, "/")
	return pl, nil
}

// pathOf is n's path, and whether every folder above it is live.
func (s *Service) pathOf(ctx context.Context, tenantID string, n node) (string, bool, error) {
	pl, err := s.placeOf(ctx, tenantID, n)
	return pl.path, pl.live, err
}

// Versions lists the versions of a file, newest first.
func (s *Service) Versions(ctx context.Context, p identity.Principal, fileID string) ([]Version, error) {
	nd, _, err := s.fileByID(ctx, p, fileID, space.Viewer)
	if err != nil {
		return nil, err
	}
	if nd.kind != File {
		return nil, errs.E(errs.NotFound, "no such file")
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return nil, err
	}
	vs, err := s.versionRows(ctx, s.db.Read(), p.TenantID, nd.id)
	if err != nil {
		return nil, err
	}
	out := []Version{}
	for i := len(vs) - 1; i >= 0; i-- {
		pv, err := publicVersion(dk, vs[i], nd.version)
		if err != nil {
			return nil, err
		}
		out = append(out, pv)
	}
	return out, nil
}

// versionRows lists the versions of a file, oldest first.
func (s *Service) versionRows(ctx context.Context, q sqldb.Q, tenantID, nodeID string) ([]versionRow, error) {
	rows, err := q.Query(ctx, "SELECT "+versionCols+" FROM file_versions WHERE tenant_id = ? AND node_id = ? ORDER BY version", tenantID, nodeID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []versionRow
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// RestoreVersion makes version n of a file its newest version again: the
// content is copied (opened and sealed anew for the new version), so
// history is never rewritten.
func (s *Service) RestoreVersion(ctx context.Context, p identity.Principal, fileID string, n int) (Item, error) {
	nd, pl, err := s.fileByID(ctx, p, fileID, space.Editor)
	if err != nil {
		return Item{}, err
	}
	old, err := s.OpenVersion(ctx, p, fileID, n)
	if err != nil {
		return Item{}, err
	}
	defer old.Close()
	spaceID := nd.spaceID
	it, _, err := s.Put(ctx, p, spaceID, Upload{Path: pl.path, ContentType: old.Version.ContentType, Length: old.Version.Size, Body: old, IfMatch: ""})
	if err != nil {
		return Item{}, err
	}
	err = s.log.Record(ctx, p.TenantID, audit.Event{Action: "file.restore_version", TargetType: "file", TargetID: nd.id,
		Details: map[string]any{"space_id": spaceID, "from_version": n, "version": it.Version}})
	return it, err
}

// Describe names the file or folder id as a person reads it in the audit
// trail — "contract.pdf in Legal" — when p may view it; an item deleted
// since, or one p may not see, is not found.
func (s *Service) Describe(ctx context.Context, p identity.Principal, id string) (string, error) {
	nd, pl, err := s.fileByID(ctx, p, id, space.Viewer)
	if err != nil {
		return "", err
	}
	sp, err := s.spaces.Get(ctx, p, nd.spaceID)
	if err != nil {
		return "", err
	}
	name := pl.path
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return name + " in " + sp.Name, nil
}
