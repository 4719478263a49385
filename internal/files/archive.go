package files

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/segcrypt"
	"github.com/custodia/custodia/internal/space"
)

// A space or a folder goes out as a zip and comes in from one. Export
// streams the current version of every live file below the folder, read
// and checked as it goes. Import must read a zip from its end, so the
// upload is first spooled — sealed under a key of its own that only this
// request holds, into the space's own region, announced like any blob —
// then checked whole (names, sizes, what exists) before anything is
// written, then unpacked file by file.

// entry is one item of an exported tree.
type entry struct {
	path string // relative to the exported folder
	node node
	v    versionRow // files: the current version
}

// tree lists the live items below folder rootID ("" for the top of the
// space), folders before what they hold, each folder's items by name.
func (s *Service) tree(ctx context.Context, dk *keyring.DataKey, tenantID, spaceID, rootID string) ([]entry, error) {
	var out []entry
	var walk func(parent, prefix string, depth int) error
	walk = func(parent, prefix string, depth int) error {
		if depth > MaxDepth {
			return nil
		}
		rows, err := s.db.Read().Query(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = ? AND space_id = ? AND parent_id = ? AND trashed_at = 0",
			tenantID, spaceID, parent)
		if err != nil {
			return err
		}
		var kids []entry
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				rows.Close()
				return err
			}
			name, err := dk.Open("nodes", "name_ct", n.id, n.nameCT)
			if err != nil {
				rows.Close()
				return err
			}
			kids = append(kids, entry{path: path.Join(prefix, string(name)), node: n})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		slices.SortFunc(kids, func(a, b entry) int { return strings.Compare(a.path, b.path) })
		for _, k := range kids {
			if k.node.kind == File {
				if k.v, err = s.version(ctx, s.db.Read(), tenantID, k.node.id, k.node.version); err != nil {
					return err
				}
			}
			out = append(out, k)
			if k.node.kind == Folder {
				if err := walk(k.node.id, k.path, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, walk(rootID, "", 0)
}

// Archive is what an export or an import holds.
type Archive struct {
	Files   int   `json:"files"`
	Folders int   `json:"folders"`
	Bytes   int64 `json:"bytes"` // of file content
}

// ExportZip writes a zip of the folder at folderPath ("" for the whole
// space) to w: a directory entry per folder (empty ones kept) and the
// current version of every live file, named relative to the folder. It is
// audited before its first byte. An error after the first byte leaves w
// with a cut zip, which the caller must make visible.
func (s *Service) ExportZip(ctx context.Context, p identity.Principal, spaceID, folderPath string, w io.Writer) (Archive, error) {
	names, err := SplitPath("path", folderPath)
	if err != nil {
		return Archive{}, err
	}
	n, err := s.itemAt(ctx, p, spaceID, names, space.Viewer)
	if err != nil {
		return Archive{}, err
	}
	root, kind := "", "space"
	if len(names) > 0 {
		if n.kind != Folder {
			return Archive{}, errs.Field("path", "not a folder: download a file as it is")
		}
		root, kind = n.id, Folder
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Archive{}, err
	}
	items, err := s.tree(ctx, dk, p.TenantID, spaceID, root)
	if err != nil {
		return Archive{}, err
	}
	var a Archive
	for _, e := range items {
		if e.node.kind == File {
			a.Files, a.Bytes = a.Files+1, a.Bytes+e.v.size
		} else {
			a.Folders++
		}
	}
	target := spaceID
	if root != "" {
		target = root
	}
	if err := s.log.Record(ctx, p.TenantID, audit.Event{Action: kind + ".export", TargetType: kind, TargetID: target,
		Details: map[string]any{"space_id": spaceID, "files": a.Files, "folders": a.Folders, "bytes": a.Bytes}}); err != nil {
		return Archive{}, err
	}
	zw := zip.NewWriter(w)
	for _, e := range items {
		if e.node.kind == Folder {
			if _, err := zw.CreateHeader(&zip.FileHeader{Name: e.path + "/", Modified: time.UnixMicro(e.node.updatedAt).UTC()}); err != nil {
				return a, err
			}
			continue
		}
		f, err := zw.CreateHeader(&zip.FileHeader{Name: e.path, Method: zip.Store, Modified: time.UnixMicro(e.v.createdAt).UTC()})
		if err != nil {
			return a, err
		}
		c, err := s.openBlob(ctx, dk, p.TenantID, e.v)
		if err != nil {
			return a, err
		}
		_, err = io.Copy(f, c)
		c.Close()
		if err != nil {
			return a, fmt.Errorf("export version %s: %w", e.v.id, err)
		}
	}
	return a, zw.Close()
}

// What an import does with a file that exists already.
const (
	ExistingFail    = "fail"    // a problem: nothing is imported
	ExistingSkip    = "skip"    // left as it is, counted as skipped
	ExistingVersion = "version" // the zip's content becomes its newest version
)

// Limits on an imported zip.
const (
	MaxImportEntries = 100_000
)

// Import is a zip to unpack into a folder of a space.
type Import struct {
	Path     string // the folder to unpack into ("" for the top of the space); made when missing
	Existing string // ExistingFail (default), ExistingSkip or ExistingVersion
	DryRun   bool   // check only
	Length   int64  // of Body, -1 when unknown
	Body     io.Reader
}

// ImportReport is what an import did (or, dry, would do).
type ImportReport struct {
	DryRun   bool  `json:"dry_run"`
	Files    int   `json:"files"`    // new files
	Versions int   `json:"versions"` // new versions of files that existed
	Skipped  int   `json:"skipped"`  // files that existed, left as they are
	Folders  int   `json:"folders"`  // folders made
	Bytes    int64 `json:"bytes"`    // of content written
}

// ImportProgress is reported after each file.
type ImportProgress struct {
	Done  int   `json:"done"`
	Total int   `json:"total"`
	Bytes int64 `json:"bytes"`
}

// planned is one entry of a checked zip.
type planned struct {
	names  []string // below the space's top
	folder bool
	file   *zip.File
	entry  int // the index of the entry that names it, or first implies it
	exists bool
}

// ImportZip unpacks a zip into a folder of a space. The zip is checked
// whole first — every entry's name (no '..', absolute paths, '\',
// control characters, overlong names or paths), duplicates, encryption,
// symbolic links, compression methods, the quota, what exists — and every
// problem reported by entry number and field, never by name; then folders
// are made and each file stored as an upload is (a version of its own,
// audited). progress, when given, is called after each file. An import
// that stops midway keeps the files stored before it stopped (the report
// counts them); importing again with Existing "skip" goes on.
func (s *Service) ImportZip(ctx context.Context, p identity.Principal, spaceID string, in Import, progress func(ImportProgress)) (ImportReport, error) {
	rep := ImportReport{DryRun: in.DryRun}
	if err := s.Need(ctx, p, spaceID, in.Path, space.Editor); err != nil {
		return rep, err
	}
	if in.Existing == "" {
		in.Existing = ExistingFail
	}
	if !slices.Contains([]string{ExistingFail, ExistingSkip, ExistingVersion}, in.Existing) {
		return rep, errs.Field("existing", "%q, %q or %q", ExistingFail, ExistingSkip, ExistingVersion)
	}
	base, err := SplitPath("path", in.Path)
	if err != nil {
		return rep, err
	}
	region, err := s.spaceRegion(ctx, s.db.Read(), p.TenantID, spaceID, "")
	if err != nil {
		return rep, err
	}
	st, err := s.store(region)
	if err != nil {
		return rep, err
	}
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return rep, err
	}
	room := int64(-1)
	if t.QuotaBytes > 0 {
		used, err := s.taken(ctx, s.db.Read(), p.TenantID, "")
		if err != nil {
			return rep, err
		}
		if room = t.QuotaBytes - used; room < 0 || in.Length > room {
			return rep, quotaError(t.QuotaBytes)
		}
	}

	// Spool the zip, sealed, into the space's region.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return rep, err
	}
	sid, err := uuid.NewV7()
	if err != nil {
		return rep, err
	}
	spoolKey := p.TenantID + "/" + spaceID + "/import-" + sid.String()
	ad := []byte("custodia/v1 import " + spoolKey)
	body := &counter{r: in.Body, limit: room, quota: t.QuotaBytes}
	sealed, err := s.write(ctx, p.TenantID, st, spoolKey, key, ad, body)
	if err != nil {
		return rep, err
	}
	defer s.discard(context.WithoutCancel(ctx), st, p.TenantID, spoolKey)
	spool, err := segcrypt.Open(sealed, key, ad, func(off int64) (io.ReadCloser, error) { return st.Get(ctx, spoolKey, off, -1) })
	if err != nil {
		return rep, err
	}
	defer spool.Close()
	zr, err := zip.NewReader(&readerAt{f: spool}, body.n)
	if err != nil {
		return rep, errs.Field("body", "not a zip archive")
	}

	plan, total, err := s.checkZip(ctx, p.TenantID, spaceID, base, zr, in.Existing)
	if err != nil {
		return rep, err
	}
	if room >= 0 && total > room {
		return rep, quotaError(t.QuotaBytes)
	}
	files := 0
	for _, e := range plan {
		switch {
		case e.folder && !e.exists:
			rep.Folders++
		case !e.folder && e.exists && in.Existing == ExistingSkip:
			rep.Skipped++
		case !e.folder && e.exists:
			rep.Versions++
		case !e.folder:
			rep.Files++
		}
		if !e.folder {
			files++
		}
	}
	if in.DryRun {
		rep.Bytes = total
		return rep, nil
	}

	// Files first: each makes the folders above it in its own commit, so
	// an entry found damaged leaves no folder that holds nothing of it.
	// Folders that stay empty (the target, empty folders of the zip) are
	// made once every file is in.
	done := ImportReport{}
	n := 0
	for _, e := range plan {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		if e.folder {
			continue
		}
		n++
		if e.exists && in.Existing == ExistingSkip {
			done.Skipped++
		} else {
			rc, err := e.file.Open()
			if err != nil {
				return done, errs.Field("body", "entry %d cannot be read: %v", n, err)
			}
			_, created, err := s.Put(ctx, p, spaceID, Upload{Path: strings.Join(e.names, "/"),
				ContentType: mime.TypeByExtension(path.Ext(e.names[len(e.names)-1])), Length: int64(e.file.UncompressedSize64), Body: rc})
			rc.Close()
			if err != nil {
				if errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) {
					err = errs.Field("body", "entry %d is damaged in the zip (%v)", n, err)
				}
				return done, err
			}
			if created {
				done.Files++
			} else {
				done.Versions++
			}
			done.Bytes += int64(e.file.UncompressedSize64)
		}
		if progress != nil {
			progress(ImportProgress{Done: n, Total: files, Bytes: done.Bytes})
		}
	}
	for _, e := range plan {
		if !e.folder || e.exists {
			continue
		}
		// Conflict: a file of the import has made it already.
		if _, err := s.Mkdir(ctx, p, spaceID, strings.Join(e.names, "/")); err != nil && !errs.Is(err, errs.Conflict) {
			return done, err
		}
		done.Folders++
	}
	err = s.log.Record(ctx, p.TenantID, audit.Event{Action: "space.import", TargetType: "space", TargetID: spaceID,
		Details: map[string]any{"files": done.Files, "versions": done.Versions, "skipped": done.Skipped, "folders": done.Folders,
			"bytes": done.Bytes, "zip_bytes": body.n, "existing": in.Existing}})
	return done, err
}

// checkZip checks every entry of zr for an import below base and plans
// it: folders (also those only implied by a file's path) before what they
// hold. It answers the plan and the bytes the files will take.
func (s *Service) checkZip(ctx context.Context, tenantID, spaceID string, base []string, zr *zip.Reader, existing string) ([]planned, int64, error) {
	if len(zr.File) > MaxImportEntries {
		return nil, 0, errs.Field("body", "at most %d entries in a zip", MaxImportEntries)
	}
	plan, total, problems := planZip(base, zr.File)
	bad := func(i int, format string, args ...any) { problems = append(problems, entryProblem(i, format, args...)) }
	// What exists already.
	for i := range plan {
		e := &plan[i]
		found, err := s.walk(ctx, s.db.Read(), tenantID, spaceID, e.names)
		if err != nil {
			var fe *errs.Error
			if errors.As(err, &fe) && fe.Field == "path" {
				bad(e.entry, "a file in the space is where this path needs a folder")
				continue
			}
			return nil, 0, err
		}
		if len(found) < len(e.names) {
			continue
		}
		e.exists = true
		last := found[len(found)-1]
		switch {
		case e.folder && last.kind != Folder:
			bad(e.entry, "a file in the space has this folder's path")
		case !e.folder && last.kind != File:
			bad(e.entry, "a folder in the space has this file's path")
		case !e.folder && existing == ExistingFail:
			bad(e.entry, "a file exists at this path (existing=skip or existing=version to go on)")
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b errs.RowProblem) int { return a.Line - b.Line })
		return nil, 0, errs.Rows(fmt.Sprintf("%d problems in the zip; nothing was imported", len(problems)), problems)
	}
	return plan, total, nil
}

// entryProblem is what is wrong with the name of the zip's entry i.
func entryProblem(i int, format string, args ...any) errs.RowProblem {
	return errs.RowProblem{Line: i + 1, Field: "name", Reason: fmt.Sprintf(format, args...)}
}

// planZip checks the entries of a zip to be imported below base, from
// their headers alone, and plans it: folders (also those only implied by
// a file's path) before what they hold, each path once. It answers the
// plan, the bytes the files declare and the problems, by entry.
func planZip(base []string, entries []*zip.File) ([]planned, int64, []errs.RowProblem) {
	var problems []errs.RowProblem
	bad := func(i int, format string, args ...any) { problems = append(problems, entryProblem(i, format, args...)) }
	kinds := map[string]bool{} // path → is a folder
	var plan []planned
	var total int64
	add := func(names []string, folder bool, f *zip.File, i int) {
		key := strings.Join(names, "/")
		if was, ok := kinds[key]; ok {
			if !folder || !was {
				bad(i, "a second entry with this path")
			}
			return
		}
		kinds[key] = folder
		plan = append(plan, planned{names: names, folder: folder, file: f, entry: i})
	}
	for j := 1; j <= len(base); j++ { // the folder it goes into, made when missing
		add(slices.Clone(base[:j]), true, nil, 0)
	}
	for i, f := range entries {
		dir := strings.HasSuffix(f.Name, "/") || f.Mode().IsDir() // a folder by its mode, even without the slash
		rel, err := SplitPath("name", strings.TrimSuffix(f.Name, "/"))
		switch {
		case err != nil:
			var e *errs.Error
			if errors.As(err, &e) {
				bad(i, "%s", e.Detail)
			} else {
				bad(i, "not a valid path")
			}
			continue
		case len(rel) == 0:
			bad(i, "an empty name")
			continue
		case len(base)+len(rel) > MaxDepth:
			bad(i, "deeper than %d levels where it would go", MaxDepth)
			continue
		case f.Flags&0x1 != 0:
			bad(i, "encrypted entries cannot be imported")
			continue
		case !f.Mode().IsDir() && !f.Mode().IsRegular():
			bad(i, "only files and folders can be imported (not links or devices)")
			continue
		case !dir && f.Method != zip.Store && f.Method != zip.Deflate:
			bad(i, "compression method %d is not supported (store or deflate)", f.Method)
			continue
		}
		names := append(slices.Clone(base), rel...)
		for j := len(base) + 1; j < len(names); j++ { // the folders its path implies
			add(slices.Clone(names[:j]), true, nil, i)
		}
		add(names, dir, f, i)
		if !dir {
			total += int64(f.UncompressedSize64)
		}
	}
	return plan, total, problems
}

// readerAt reads a segcrypt.File at offsets (zip.Reader needs it).
type readerAt struct {
	mu sync.Mutex
	f  *segcrypt.File
}

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(r.f, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}
