package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/space"
)

// idle is how long an upload or a download may make no progress before
// the connection is dropped; it replaces the server's whole-request
// timeouts, which would cut off large files on slow links.
const idle = time.Minute

// progressReader moves the connection's read deadline on every read, and
// its write deadline with it, so that the answer can still be written
// when a long upload ends.
type progressReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (p progressReader) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(time.Now().Add(idle))
	_ = p.rc.SetWriteDeadline(time.Now().Add(idle))
	return p.r.Read(b)
}

// progressWriter moves the connection's write deadline on every write.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (p progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(idle))
	return p.ResponseWriter.Write(b)
}

func (p progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// download is a streamed response body whose headers are set at its
// first byte, so that an error before it still answers a problem; the
// write deadline moves with progress.
type download struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	header func(http.Header)
	n      int64
}

func newDownload(w http.ResponseWriter, header func(http.Header)) *download {
	return &download{w: w, rc: http.NewResponseController(w), header: header}
}

func (d *download) Write(p []byte) (int, error) {
	if d.n == 0 && len(p) > 0 {
		d.header(d.w.Header())
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(idle))
	n, err := d.w.Write(p)
	d.n += int64(n)
	return n, err
}

// started tells whether the body has begun. When it has, an error can no
// longer be answered: cut reports it to the log and drops the connection,
// so that the client sees a broken transfer, never a complete-looking one.
func (d *download) started() bool { return d.n > 0 }

func (a *API) cut(r *http.Request, what string, err error) {
	a.logger.ErrorContext(r.Context(), what+" stopped midway", "request_id", httpio.RequestID(r.Context()), "error", loggable(err))
	panic(http.ErrAbortHandler)
}

// loggable is what a log may say of err once a response has begun: the
// whole of an internal error (ids, regions, causes), but only the kind
// and field of an error about the request, whose detail may repeat what
// was sent (a file's name).
func loggable(err error) string {
	var e *errs.Error
	if k := errs.KindOf(err); k != errs.Internal && errors.As(err, &e) {
		return k.String() + " " + e.Field
	}
	return err.Error()
}

// lines is an NDJSON response (progress of an import): the 200 and its
// headers go with the first line; each line is flushed and moves the
// write deadline.
type lines struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newLines(w http.ResponseWriter) *lines { return &lines{w: w, rc: http.NewResponseController(w)} }

func (l *lines) write(v any) {
	if !l.started {
		l.w.Header().Set("Content-Type", "application/x-ndjson")
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
	_ = l.rc.SetWriteDeadline(time.Now().Add(idle))
	_ = json.NewEncoder(l.w).Encode(v)
	_ = l.rc.Flush()
}

// zipHeader sets the headers of a zip download called name.
func zipHeader(name string) func(http.Header) {
	return func(h http.Header) {
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
}

func (a *API) upload(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	ifMatch := strings.Trim(strings.TrimPrefix(r.Header.Get("If-Match"), "W/"), `"`)
	it, created, err := a.files.Put(r.Context(), principal(r), r.PathValue("id"), files.Upload{
		Path: r.PathValue("path"), ContentType: r.Header.Get("Content-Type"), Length: r.ContentLength,
		Body: progressReader{r: r.Body, rc: rc}, IfMatch: ifMatch,
	})
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/api/v1/spaces/"+it.SpaceID+"/files/"+escapePath(it.Path))
	}
	httpio.JSON(w, code, it)
	return nil
}

// startUpload opens a resumable upload: {path, size, content_type,
// if_match} → 201 and the session, whose parts go to PATCH
// /api/v1/uploads/{id}.
func (a *API) startUpload(w http.ResponseWriter, r *http.Request) error {
	var in files.NewUpload
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	u, err := a.files.StartUpload(r.Context(), principal(r), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/uploads/"+u.ID)
	w.Header().Set("Upload-Offset", "0")
	httpio.JSON(w, http.StatusCreated, u)
	return nil
}

func (a *API) getUpload(w http.ResponseWriter, r *http.Request) error {
	u, err := a.files.Upload(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	httpio.JSON(w, http.StatusOK, u)
	return nil
}

// appendUpload stores the body as the part of an upload that starts at
// the Upload-Offset header: 204 with the new Upload-Offset while bytes
// are missing, then 201 (a new file) or 200 (a new version) and the file.
// A wrong offset is a 409 carrying the right one in Upload-Offset.
func (a *API) appendUpload(w http.ResponseWriter, r *http.Request) error {
	offset, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		offset = -1 // refused once the upload is found
	}
	res, err := a.files.AppendUpload(r.Context(), principal(r), r.PathValue("id"), offset, r.ContentLength,
		progressReader{r: r.Body, rc: http.NewResponseController(w)})
	if res.Session.ID != "" {
		w.Header().Set("Upload-Offset", strconv.FormatInt(res.Session.Offset, 10))
	}
	switch {
	case err != nil:
		return err
	case res.Item == nil:
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	code := http.StatusOK
	if res.Created {
		code = http.StatusCreated
		w.Header().Set("Location", "/api/v1/spaces/"+res.Item.SpaceID+"/files/"+escapePath(res.Item.Path))
	}
	httpio.JSON(w, code, res.Item)
	return nil
}

func (a *API) cancelUpload(w http.ResponseWriter, r *http.Request) error {
	if err := a.files.CancelUpload(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "%", "%25"), "?", "%3F")
	}
	return strings.Join(parts, "/")
}

// getFile answers a file's content (a version with ?version=N), or the
// listing of a folder (the top of the space for an empty path).
func (a *API) getFile(w http.ResponseWriter, r *http.Request) error {
	p, spaceID, path := principal(r), r.PathValue("id"), r.PathValue("path")
	if strings.Trim(path, "/") != "" && !strings.HasSuffix(path, "/") {
		it, err := a.files.Stat(r.Context(), p, spaceID, path)
		if err != nil {
			return err
		}
		if it.Kind == files.File {
			n, err := versionParam(r.URL.Query().Get("version"), "version")
			if err != nil {
				return err
			}
			c, err := a.files.Open(r.Context(), p, spaceID, path, n)
			if err != nil {
				return err
			}
			return a.serveContent(w, r, c)
		}
	}
	items, err := a.files.List(r.Context(), p, spaceID, path)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.Item]{Items: items})
	return nil
}

func versionParam(v, field string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errs.Field(field, "a version number: 1 or more")
	}
	return n, nil
}

// serveContent streams c with range, ETag and conditional request support
// (http.ServeContent over the decrypting reader). Content is always an
// attachment in a sandbox: an uploaded page never runs in our origin.
func (a *API) serveContent(w http.ResponseWriter, r *http.Request, c *files.Content) error {
	defer c.Close()
	if r.Header.Get("Range") == "" && c.Version.Size > 0 {
		// Open the first segment before answering, so that content failing
		// its integrity check gets a clear error rather than a cut stream.
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return &errs.Error{Kind: errs.Internal, Detail: "the stored content of this file fails its integrity check", Err: err}
		}
		if _, err := c.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	h := w.Header()
	h.Set("Content-Type", c.Version.ContentType)
	h.Set("ETag", `"`+c.Version.ID+`"`)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": c.Item.Name}))
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("X-Custodia-Version", strconv.Itoa(c.Version.Version))
	body := &loggedReader{ReadSeeker: c, onErr: func(err error) {
		a.logger.Error("file content stopped", "file", c.Item.ID, "version", c.Version.ID, "error", err.Error())
	}}
	http.ServeContent(progressWriter{ResponseWriter: w, rc: http.NewResponseController(w)}, r, "", c.Version.CreatedAt, body)
	return nil
}

// loggedReader reports the first read error other than EOF: once the
// response has begun, the log is the only place it can go (the client
// sees a cut stream, never wrong bytes).
type loggedReader struct {
	io.ReadSeeker
	onErr  func(error)
	logged bool
}

func (l *loggedReader) Read(p []byte) (int, error) {
	n, err := l.ReadSeeker.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !l.logged {
		l.logged = true
		l.onErr(err)
	}
	return n, err
}

func (a *API) makeFolder(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Path string `json:"path"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	it, err := a.files.Mkdir(r.Context(), principal(r), r.PathValue("id"), in.Path)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusCreated, it)
	return nil
}

func (a *API) moveFile(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Path string `json:"path"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	it, err := a.files.Move(r.Context(), principal(r), r.PathValue("id"), r.PathValue("path"), in.Path)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, it)
	return nil
}

func (a *API) trashFile(w http.ResponseWriter, r *http.Request) error {
	it, err := a.files.Trash(r.Context(), principal(r), r.PathValue("id"), r.PathValue("path"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, it)
	return nil
}

func (a *API) trashSpace(w http.ResponseWriter, r *http.Request) error {
	it, err := a.files.TrashSpace(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, it)
	return nil
}

func (a *API) listVersions(w http.ResponseWriter, r *http.Request) error {
	vs, err := a.files.Versions(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.Version]{Items: vs})
	return nil
}

func (a *API) downloadVersion(w http.ResponseWriter, r *http.Request) error {
	n, err := versionParam(r.PathValue("version"), "version")
	if err != nil {
		return err
	}
	c, err := a.files.OpenVersion(r.Context(), principal(r), r.PathValue("id"), max(n, 1))
	if err != nil {
		return err
	}
	return a.serveContent(w, r, c)
}

func (a *API) restoreVersion(w http.ResponseWriter, r *http.Request) error {
	n, err := versionParam(r.PathValue("version"), "version")
	if err != nil {
		return err
	}
	it, err := a.files.RestoreVersion(r.Context(), principal(r), r.PathValue("id"), max(n, 1))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, it)
	return nil
}

func (a *API) listTrash(w http.ResponseWriter, r *http.Request) error {
	items, err := a.files.ListTrash(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.TrashItem]{Items: items})
	return nil
}

func (a *API) restoreTrash(w http.ResponseWriter, r *http.Request) error {
	out, err := a.files.Restore(r.Context(), principal(r), r.PathValue("item"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, out)
	return nil
}

func (a *API) purgeTrash(w http.ResponseWriter, r *http.Request) error {
	if err := a.files.Purge(r.Context(), principal(r), r.PathValue("item")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) residency(w http.ResponseWriter, r *http.Request) error {
	rep, err := a.Residency(r)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, rep)
	return nil
}

// Residency answers where r's tenant's data is: the files' report, with
// every kept backup of the database (one copy holds every tenant's rows,
// encrypted, in the operator's backup location).
func (a *API) Residency(r *http.Request) (files.Residency, error) {
	rep, err := a.files.Residency(r.Context(), principal(r))
	if err != nil || a.backups == nil {
		return rep, err
	}
	s := a.backups.Setup()
	ms, err := backup.List(s.Dir, s.Trusted...)
	if err != nil {
		return rep, err
	}
	for _, m := range ms {
		at := m.CreatedAt
		n := m.Database.Bytes
		for _, k := range m.Keys {
			n += k.Bytes
		}
		rep.Backups = append(rep.Backups, files.Place{Kind: "database: every organisation's rows, encrypted, without the people's keys",
			Location: filepath.Join(s.Dir, m.ID), At: &at, Bytes: n})
		for _, f := range m.Files {
			rep.Backups = append(rep.Backups, files.Place{Kind: "file content: copies kept in their own region", Region: f.Region,
				Location: f.Location + "/" + backup.Prefix, At: &at, Bytes: f.Bytes})
		}
	}
	if d, ok, err := backup.LastDrill(s.Dir); err == nil && ok {
		rep.LastRestoreDrill = &files.Drill{At: d.At, Backup: d.Backup, OK: d.OK}
	}
	rep.Restore = "A restore puts the database back where the operator names it, and each region's files back in that region's store (or a bucket or directory the operator names for that region)."
	return rep, nil
}

func (a *API) listFolderGrants(w http.ResponseWriter, r *http.Request) error {
	gs, err := a.files.FolderGrants(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[space.Grant]{Items: gs})
	return nil
}

func (a *API) grantFolder(w http.ResponseWriter, r *http.Request) error {
	var in space.GrantInput
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	g, err := a.files.GrantFolder(r.Context(), principal(r), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, g)
	return nil
}

func (a *API) revokeFolder(w http.ResponseWriter, r *http.Request) error {
	if err := a.files.RevokeFolder(r.Context(), principal(r), r.PathValue("id"), r.PathValue("grant")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listShared(w http.ResponseWriter, r *http.Request) error {
	fs, err := a.files.Shared(r.Context(), principal(r))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.SharedFolder]{Items: fs})
	return nil
}

func (a *API) listLinks(w http.ResponseWriter, r *http.Request) error {
	ls, err := a.files.Links(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.Link]{Items: ls})
	return nil
}

// link links a file or folder to a data subject: 201 when new, 200 when
// it was linked already.
func (a *API) link(w http.ResponseWriter, r *http.Request) error {
	l, created, err := a.files.Link(r.Context(), principal(r), r.PathValue("id"), r.PathValue("subject"))
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	httpio.JSON(w, code, l)
	return nil
}

func (a *API) unlink(w http.ResponseWriter, r *http.Request) error {
	if err := a.files.Unlink(r.Context(), principal(r), r.PathValue("id"), r.PathValue("subject")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) subjectFiles(w http.ResponseWriter, r *http.Request) error {
	ls, err := a.files.SubjectFiles(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[files.Linked]{Items: ls})
	return nil
}

// exportZip streams a zip of a space, or of the folder ?path= names.
func (a *API) exportZip(w http.ResponseWriter, r *http.Request) error {
	folder := r.URL.Query().Get("path")
	name := "space"
	if names, err := files.SplitPath("path", folder); err == nil && len(names) > 0 {
		name = names[len(names)-1]
	}
	d := newDownload(w, zipHeader(name+".zip"))
	if _, err := a.files.ExportZip(r.Context(), principal(r), r.PathValue("id"), folder, d); err != nil {
		if d.started() {
			a.cut(r, "zip export", err)
		}
		return err
	}
	return nil
}

// importZip unpacks a zip (the body, application/zip) into a space, or the
// folder ?path= names; ?existing=fail|skip|version, ?dry_run=true. With
// Accept: application/x-ndjson it streams {"done","total","bytes"} after
// each file, then {"result": …} (or {"error": …} if it stops midway).
func (a *API) importZip(w http.ResponseWriter, r *http.Request) error {
	// Who may import comes before what they send: a bad request must not
	// tell a stranger that the space exists.
	if err := a.files.Need(r.Context(), principal(r), r.PathValue("id"), r.URL.Query().Get("path"), space.Editor); err != nil {
		return err
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/zip" {
		return errs.Field("Content-Type", "send the archive as application/zip")
	}
	q := r.URL.Query()
	rc := http.NewResponseController(w)
	in := files.Import{Path: q.Get("path"), Existing: q.Get("existing"), Length: r.ContentLength,
		Body: progressReader{r: r.Body, rc: rc}}
	switch v := q.Get("dry_run"); v {
	case "", "false":
	case "true":
		in.DryRun = true
	default:
		return errs.Field("dry_run", "true or false")
	}
	stream := strings.Contains(r.Header.Get("Accept"), "application/x-ndjson")
	lines := newLines(w)
	var progress func(files.ImportProgress)
	if stream {
		progress = func(p files.ImportProgress) { lines.write(p) }
	}
	rep, err := a.files.ImportZip(r.Context(), principal(r), r.PathValue("id"), in, progress)
	_ = rc.SetWriteDeadline(time.Now().Add(idle)) // unpacking may have outlasted the body's deadline
	switch {
	case err != nil && lines.started:
		a.logger.ErrorContext(r.Context(), "zip import stopped", "request_id", httpio.RequestID(r.Context()), "error", loggable(err))
		lines.write(map[string]any{"error": map[string]any{"detail": "the import stopped; the files counted as imported were kept (import again with existing=skip to go on)",
			"imported": rep, "request_id": httpio.RequestID(r.Context())}})
		return nil
	case err != nil:
		var e *errs.Error
		if n := rep.Files + rep.Versions; n > 0 && errors.As(err, &e) {
			told := *e
			told.Detail += fmt.Sprintf(" (files stored before it stopped: %d; they were kept — import again with existing=skip to go on)", n)
			return &told
		}
		return err
	case stream:
		lines.write(map[string]any{"result": rep})
	case in.DryRun:
		httpio.JSON(w, http.StatusOK, rep)
	default:
		httpio.JSON(w, http.StatusCreated, rep)
	}
	return nil
}

// migrateSpace starts (or resumes) moving a space to another region: 202,
// with where the move stands; GET …/migration follows it.
func (a *API) migrateSpace(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Region string `json:"region"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	m, err := a.files.StartMigration(r.Context(), principal(r), r.PathValue("id"), in.Region)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusAccepted, m)
	return nil
}

func (a *API) migrationStatus(w http.ResponseWriter, r *http.Request) error {
	m, err := a.files.MigrationStatus(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, m)
	return nil
}
