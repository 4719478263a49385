package api_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// zipOf builds a zip of entries (name → content; a name ending in '/' is
// a folder), in the order given.
func zipOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e[0], Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unzip reads every entry of a zip.
func unzip(t *testing.T, b []byte) (names []string, content map[string][]byte) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a zip (%d bytes): %v", len(b), err)
	}
	content = map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		c, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		names, content[f.Name] = append(names, f.Name), c
	}
	return names, content
}

func importZip(t *testing.T, env *apptest.Env, spaceID, query string, body []byte) apptest.Response {
	t.Helper()
	return env.DoRaw(t, env.Token, "POST", "/api/v1/spaces/"+spaceID+"/import"+query, "application/zip", string(body))
}

// TestZipExportImport: a space or a folder goes out as a zip (current
// versions, empty folders kept, the trash left out) and comes back in
// identical elsewhere; existing files fail, are skipped or get a version
// as asked; a dry run writes nothing; progress streams as NDJSON; and the
// spooled upload never outlives the request.
func TestZipExportImport(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		src := newSpace(t, env, map[string]any{"name": "Source"})
		contract := content(150_000, "Ann's contract, signed")
		put(t, env, src, "Ann/contract.pdf", content(1000, "Ann's contract, draft"), 201)
		doc := put(t, env, src, "Ann/contract.pdf", contract, 200)
		put(t, env, src, "notes.txt", content(300, "Notes on Ann"), 201)
		put(t, env, src, "Ann/old.txt", content(100, "old"), 201)
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+src+"/folders", map[string]any{"path": "Ann/empty"}); r.Status != 201 {
			t.Fatalf("folder: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/spaces/"+src+"/files/Ann/old.txt", nil); r.Status != 200 {
			t.Fatalf("trash: %d %s", r.Status, r.Body)
		}

		r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+src+"/export", nil)
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/zip" {
			t.Fatalf("export: %d %s", r.Status, r.Body)
		}
		whole := r.Body
		names, got := unzip(t, whole)
		if want := []string{"Ann/", "Ann/contract.pdf", "Ann/empty/", "notes.txt"}; !slices.Equal(names, want) {
			t.Errorf("the space's zip holds %q; want %q", names, want)
		}
		if !bytes.Equal(got["Ann/contract.pdf"], contract) || !bytes.Equal(got["notes.txt"], content(300, "Notes on Ann")) {
			t.Error("the zip's files are not the current versions")
		}
		// A changed byte deep in a file cuts the zip.
		restore := flipDeep(t, filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, src, versionID(t, env, doc.ID, 2)))
		wantCut(t, env, "/api/v1/spaces/"+src+"/export", "zip export")
		restore()
		r = env.Do(t, env.Token, "GET", "/api/v1/spaces/"+src+"/export?path=Ann", nil)
		if names, _ := unzip(t, r.Body); r.Status != 200 || !slices.Equal(names, []string{"contract.pdf", "empty/"}) ||
			!strings.Contains(r.Header.Get("Content-Disposition"), "Ann.zip") {
			t.Errorf("the folder's zip: %d %q %s", r.Status, names, r.Header.Get("Content-Disposition"))
		}
		for _, bad := range []string{"notes.txt", "missing", "../x"} {
			if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+src+"/export?path="+bad, nil); r.Status != 400 && r.Status != 404 {
				t.Errorf("export of %s: %d %s", bad, r.Status, r.Body)
			}
		}

		// Back in, into a folder of another space.
		dst := newSpace(t, env, map[string]any{"name": "Copy"})
		r = importZip(t, env, dst, "?path=Restored&dry_run=true", whole)
		var rep files.ImportReport
		if r.JSON(t, &rep); r.Status != 200 || rep.Files != 2 || rep.Folders != 3 || !rep.DryRun {
			t.Errorf("dry run: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+dst+"/files/", nil); !strings.Contains(string(r.Body), `"items":[]`) {
			t.Errorf("a dry run wrote: %s", r.Body)
		}
		r = importZip(t, env, dst, "?path=Restored", whole)
		if r.JSON(t, &rep); r.Status != 201 || rep.Files != 2 || rep.Folders != 3 || rep.Bytes != int64(len(contract)+300) {
			t.Fatalf("import: %d %s", r.Status, r.Body)
		}
		r = env.Do(t, env.Token, "GET", "/api/v1/spaces/"+dst+"/export?path=Restored", nil)
		if again, _ := unzip(t, r.Body); !slices.Equal(again, names) {
			t.Errorf("exported again: %q; want %q", again, names)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+dst+"/files/Restored/Ann/contract.pdf", nil); !bytes.Equal(r.Body, contract) {
			t.Errorf("the imported contract: %d, %d bytes", r.Status, len(r.Body))
		}
		if n := sqldbtest.Strings(t, env.App.DB, "SELECT blob_key FROM blob_intents"); len(n) != 0 {
			t.Errorf("announcements left after the import: %v", n)
		}
		for _, b := range apptest.Files(t, filepath.Join(env.DataDir, "regions")) {
			if strings.Contains(filepath.Base(b), "import-") {
				t.Errorf("the spooled zip is still there: %s", b)
			}
		}

		// Existing files: fail (nothing changes), skip, version.
		r = importZip(t, env, dst, "?path=Restored", whole)
		if r.Status != 400 || !strings.Contains(string(r.Body), `"line":2`) || !strings.Contains(string(r.Body), `"line":4`) ||
			strings.Contains(string(r.Body), "contract") {
			t.Errorf("import over existing files: %d %s", r.Status, r.Body)
		}
		if r := importZip(t, env, dst, "?path=Restored&existing=skip", whole); r.Status != 201 || r.Map(t)["skipped"] != 2.0 {
			t.Errorf("existing=skip: %d %s", r.Status, r.Body)
		}
		if r := importZip(t, env, dst, "?path=Restored&existing=version", whole); r.Status != 201 || r.Map(t)["versions"] != 2.0 {
			t.Errorf("existing=version: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+dst+"/files/Restored/notes.txt?version=2", nil); r.Status != 200 {
			t.Errorf("no second version after existing=version: %d", r.Status)
		}

		// Progress as NDJSON, one line per file, then the result.
		req, _ := http.NewRequest("POST", env.Server.URL+"/api/v1/spaces/"+dst+"/import?path=Streamed", bytes.NewReader(whole))
		req.Header.Set("Authorization", "Bearer "+env.Token)
		req.Header.Set("Content-Type", "application/zip")
		req.Header.Set("Accept", "application/x-ndjson")
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var lines []map[string]any
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("not NDJSON: %q", sc.Text())
			}
			lines = append(lines, m)
		}
		res.Body.Close()
		if res.Header.Get("Content-Type") != "application/x-ndjson" || len(lines) != 3 || lines[0]["done"] != 1.0 || lines[0]["total"] != 2.0 ||
			lines[2]["result"] == nil {
			t.Errorf("progress: %s %v", res.Header.Get("Content-Type"), lines)
		}
	})
}

// TestZipImportBadInput: an archive with any bad entry — a path out of
// the folder, an absolute one, a backslash, a duplicate, a link, a file
// where a folder must go — is refused whole, every bad entry named by
// number, and nothing is written; so is what is not a zip, and an archive
// over the quota.
func TestZipImportBadInput(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Target"})
		put(t, env, sp, "taken", content(10, "x"), 201)
		blobs := len(apptest.Files(t, filepath.Join(env.DataDir, "regions")))
		var link bytes.Buffer
		zw := zip.NewWriter(&link)
		h := &zip.FileHeader{Name: "link"}
		h.SetMode(os.ModeSymlink | 0o777)
		w, _ := zw.CreateHeader(h)
		io.WriteString(w, "/etc/passwd")
		zw.Close()
		cases := []struct {
			name  string
			body  []byte
			lines []string
		}{
			{"zip slip", zipOf(t, [2]string{"ok.txt", "fine"}, [2]string{"../evil.txt", "x"}, [2]string{"a/../../evil.txt", "x"}), []string{`"line":2`, `"line":3`}},
			{"absolute", zipOf(t, [2]string{"/etc/cron.d/x", "x"}), []string{`"line":1`}},
			{"backslash", zipOf(t, [2]string{`a\..\x`, "x"}), []string{`"line":1`}},
			{"duplicate", zipOf(t, [2]string{"a.txt", "1"}, [2]string{"a.txt", "2"}), []string{`"line":2`}},
			{"file and folder", zipOf(t, [2]string{"a", "1"}, [2]string{"a/b", "2"}), []string{`"line":2`}},
			{"under a file", zipOf(t, [2]string{"taken/b", "2"}), []string{`"line":1`}},
			{"link", link.Bytes(), []string{`"line":1`}},
		}
		for _, c := range cases {
			r := importZip(t, env, sp, "", c.body)
			if r.Status != 400 {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
				continue
			}
			for _, l := range c.lines {
				if !strings.Contains(string(r.Body), l) {
					t.Errorf("%s: the problem does not name entry %s: %s", c.name, l, r.Body)
				}
			}
			if strings.Contains(string(r.Body), "evil") || strings.Contains(string(r.Body), "passwd") {
				t.Errorf("%s: the problem repeats a name: %s", c.name, r.Body)
			}
		}
		if r := importZip(t, env, sp, "", []byte("not a zip at all")); r.Status != 400 || !strings.Contains(string(r.Body), `"field":"body"`) {
			t.Errorf("not a zip: %d %s", r.Status, r.Body)
		}
		if r := env.DoRaw(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/import", "text/plain", "x"); r.Status != 400 {
			t.Errorf("wrong content type: %d %s", r.Status, r.Body)
		}
		if r := importZip(t, env, sp, "?existing=maybe", zipOf(t, [2]string{"a", "1"})); r.Status != 400 || !strings.Contains(string(r.Body), "existing") {
			t.Errorf("existing=maybe: %d %s", r.Status, r.Body)
		}
		if _, err := env.App.Tenants.SetQuota(context.Background(), env.Tenant.ID, 1000); err != nil {
			t.Fatal(err)
		}
		if r := importZip(t, env, sp, "", zipOf(t, [2]string{"big.txt", string(content(5000, "big"))})); r.Status != 413 {
			t.Errorf("over the quota: %d %s", r.Status, r.Body)
		}
		var list struct{ Items []files.Item }
		if env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/", nil).JSON(t, &list); len(list.Items) != 1 {
			t.Errorf("refused imports wrote: %+v", list.Items)
		}
		if n := len(apptest.Files(t, filepath.Join(env.DataDir, "regions"))); n != blobs {
			t.Errorf("%d blobs after refused imports; %d before", n, blobs)
		}
		// An entry that inflates past the size it declares (the quota was
		// checked on the declared sizes) stops the import as damaged.
		plain := content(20_000, "more than it says")
		var deflated, lying bytes.Buffer
		fw, _ := flate.NewWriter(&deflated, flate.BestSpeed)
		fw.Write(plain)
		fw.Close()
		zw = zip.NewWriter(&lying)
		gw, _ := zw.Create("fine.txt")
		io.WriteString(gw, "fine")
		rw, err := zw.CreateRaw(&zip.FileHeader{Name: "small.txt", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(plain),
			CompressedSize64: uint64(deflated.Len()), UncompressedSize64: 10})
		if err != nil {
			t.Fatal(err)
		}
		rw.Write(deflated.Bytes())
		zw.Close()
		// The entry before it was stored, and the problem says so.
		if r := importZip(t, env, sp, "", lying.Bytes()); r.Status != 400 || !strings.Contains(string(r.Body), "entry 2 is damaged") ||
			!strings.Contains(string(r.Body), "files stored before it stopped: 1") {
			t.Errorf("an entry larger than it says: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/fine.txt", nil); r.Status != 200 {
			t.Errorf("the file stored before the damaged entry: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/small.txt", nil); r.Status != 404 {
			t.Errorf("the damaged entry: %d", r.Status)
		}
		if n := len(apptest.Files(t, filepath.Join(env.DataDir, "regions"))); n != blobs+1 {
			t.Errorf("%d blobs after a damaged entry; want %d", n, blobs+1)
		}
		// Refused as damaged at its first file, an import into a new folder
		// (with an empty folder of its own) leaves no folder behind.
		zw = zip.NewWriter(&lying)
		lying.Reset()
		zw.Create("empty/")
		rw, err = zw.CreateRaw(&zip.FileHeader{Name: "sub/small.txt", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(plain),
			CompressedSize64: uint64(deflated.Len()), UncompressedSize64: 10})
		if err != nil {
			t.Fatal(err)
		}
		rw.Write(deflated.Bytes())
		zw.Close()
		if r := importZip(t, env, sp, "?path=new-target", lying.Bytes()); r.Status != 400 || !strings.Contains(string(r.Body), "damaged") {
			t.Fatalf("a damaged first entry: %d %s", r.Status, r.Body)
		}
		if env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/", nil).JSON(t, &list); len(list.Items) != 2 {
			t.Errorf("a damaged import left %d items at the top (want taken and fine.txt): %+v", len(list.Items), list.Items)
		}
	})
}

// flipDeep changes a byte in the second segment of the blob at path (past
// what a first-segment check sees) and returns how to put it back.
func flipDeep(t *testing.T, path string) (restore func()) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(raw)
	changed[36+65536+16+500] ^= 1
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// wantCut GETs path and wants the transfer broken off — never a body that
// ends cleanly — and the cut logged as what stopped midway.
func wantCut(t *testing.T, env *apptest.Env, path, what string) {
	t.Helper()
	req, _ := http.NewRequest("GET", env.Server.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+env.Token)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cut, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	if rerr == nil {
		t.Errorf("GET %s with a corrupt file ended cleanly (%d bytes, status %d)", path, len(cut), res.StatusCode)
	}
	if !strings.Contains(env.Logs.String(), what+" stopped midway") {
		t.Errorf("the cut %s was not logged", what)
	}
}
