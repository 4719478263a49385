package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/blobstore/blobtest"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/sqldb"
)

// content is n bytes that say, over and over, something personal.
func content(n int, words string) []byte {
	return bytes.Repeat([]byte(words+" "), n/(len(words)+1)+1)[:n]
}

func newSpace(t *testing.T, env *apptest.Env, body map[string]any) string {
	t.Helper()
	r := env.Do(t, env.Token, "POST", "/api/v1/spaces", body)
	if r.Status != 201 {
		t.Fatalf("create space: %d %s", r.Status, r.Body)
	}
	return r.Map(t)["id"].(string)
}

func put(t *testing.T, env *apptest.Env, spaceID, path string, body []byte, want int) files.Item {
	t.Helper()
	r := env.DoRaw(t, env.Token, "PUT", "/api/v1/spaces/"+spaceID+"/files/"+path, "application/pdf", string(body))
	if r.Status != want {
		t.Fatalf("PUT %s: %d %s; want %d", path, r.Status, r.Body, want)
	}
	var it files.Item
	if want < 300 {
		r.JSON(t, &it)
	}
	return it
}

// TestFiles: upload, download (whole, ranges, conditional), listing,
// versions and their restore, move — and on disk, in the region and in
// the database, neither the content nor the names are in clear.
func TestFiles(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Clients"})
		v1 := content(200_000, "Jane Doe signs the contract")
		it := put(t, env, sp, "Clients/Jane%20Doe/contract.pdf", v1, 201)
		if it.Kind != files.File || it.Version != 1 || it.Size != int64(len(v1)) || it.Path != "Clients/Jane Doe/contract.pdf" || it.ContentType != "application/pdf" {
			t.Fatalf("uploaded item: %+v", it)
		}
		file := "/api/v1/spaces/" + sp + "/files/Clients/Jane%20Doe/contract.pdf"
		r := env.Do(t, env.Token, "GET", file, nil)
		if r.Status != 200 || !bytes.Equal(r.Body, v1) {
			t.Fatalf("download: %d, %d bytes", r.Status, len(r.Body))
		}
		if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "contract.pdf") ||
			r.Header.Get("Accept-Ranges") != "bytes" || r.Header.Get("Content-Type") != "application/pdf" {
			t.Errorf("download headers: %v", r.Header)
		}
		etag := r.Header.Get("ETag")

		ranged := func(rng string) apptest.Response {
			req, _ := http.NewRequest("GET", env.Server.URL+file, nil)
			req.Header.Set("Authorization", "Bearer "+env.Token)
			req.Header.Set("Range", rng)
			return do(t, env, req)
		}
		for rng, want := range map[string][]byte{
			"bytes=65530-131080": v1[65530:131081], // across segment boundaries
			"bytes=-100":         v1[len(v1)-100:],
			"bytes=199990-":      v1[199990:],
			"bytes=0-0":          v1[:1],
		} {
			if r := ranged(rng); r.Status != 206 || !bytes.Equal(r.Body, want) {
				t.Errorf("range %s: %d, %d bytes; want %d", rng, r.Status, len(r.Body), len(want))
			}
		}
		if r := ranged("bytes=300000-"); r.Status != 416 {
			t.Errorf("range past the end: %d", r.Status)
		}
		req, _ := http.NewRequest("GET", env.Server.URL+file, nil)
		req.Header.Set("Authorization", "Bearer "+env.Token)
		req.Header.Set("If-None-Match", etag)
		if r := do(t, env, req); r.Status != 304 {
			t.Errorf("If-None-Match with the current ETag: %d", r.Status)
		}

		var page struct{ Items []files.Item }
		env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/", nil).JSON(t, &page)
		if len(page.Items) != 1 || page.Items[0].Name != "Clients" || page.Items[0].Kind != files.Folder {
			t.Errorf("top of the space: %+v", page.Items)
		}
		env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/Clients/Jane%20Doe", nil).JSON(t, &page)
		if len(page.Items) != 1 || page.Items[0].Path != "Clients/Jane Doe/contract.pdf" || page.Items[0].Size != int64(len(v1)) {
			t.Errorf("folder listing: %+v", page.Items)
		}

		// A new version; a stale If-Match changes nothing.
		v2 := content(70_000, "Jane Doe amends the contract")
		if v := put(t, env, sp, "Clients/Jane%20Doe/contract.pdf", v2, 200); v.Version != 2 || v.ID != it.ID {
			t.Fatalf("second upload: %+v", it)
		}
		stale := env.Do(t, env.Token, "GET", file, nil)
		r = func() apptest.Response {
			req, _ := http.NewRequest("PUT", env.Server.URL+file, strings.NewReader("lost update"))
			req.Header.Set("Authorization", "Bearer "+env.Token)
			req.Header.Set("If-Match", etag)
			return do(t, env, req)
		}()
		if r.Status != 409 {
			t.Errorf("upload with a stale If-Match: %d %s", r.Status, r.Body)
		}
		if !bytes.Equal(stale.Body, v2) {
			t.Errorf("current content is not version 2")
		}
		var versions struct{ Items []files.Version }
		env.Do(t, env.Token, "GET", "/api/v1/files/"+it.ID+"/versions", nil).JSON(t, &versions)
		sum := sha256.Sum256(v1)
		if len(versions.Items) != 2 || versions.Items[0].Version != 2 || !versions.Items[0].Current || versions.Items[1].SHA256 != hex.EncodeToString(sum[:]) ||
			versions.Items[1].Region != "local" {
			t.Fatalf("versions: %+v", versions.Items)
		}
		if r := env.Do(t, env.Token, "GET", file+"?version=1", nil); !bytes.Equal(r.Body, v1) {
			t.Errorf("version 1 by path: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/files/"+it.ID+"/versions/1", nil); !bytes.Equal(r.Body, v1) {
			t.Errorf("version 1 by id: %d", r.Status)
		}
		r = env.Do(t, env.Token, "POST", "/api/v1/files/"+it.ID+"/versions/1/restore", nil)
		if r.Status != 200 || r.Map(t)["version"] != 3.0 {
			t.Fatalf("restore version 1: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", file, nil); !bytes.Equal(r.Body, v1) || r.Header.Get("X-Custodia-Version") != "3" {
			t.Errorf("after restoring version 1 the content is not version 1's")
		}

		// Move and rename.
		r = env.Do(t, env.Token, "PATCH", file, map[string]any{"path": "Clients/Jane Doe – contract.pdf"})
		if r.Status != 200 || r.Map(t)["path"] != "Clients/Jane Doe – contract.pdf" {
			t.Fatalf("move: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", file, nil); r.Status != 404 {
			t.Errorf("old path after the move: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/Clients/Jane%20Doe%20%E2%80%93%20contract.pdf", nil); !bytes.Equal(r.Body, v1) {
			t.Errorf("new path after the move: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "PATCH", "/api/v1/spaces/"+sp+"/files/Clients", map[string]any{"path": "Clients/Jane Doe/Clients"}); r.Status != 400 {
			t.Errorf("moving a folder into itself: %d %s", r.Status, r.Body)
		}

		// On disk: three versions, three sealed blobs; nothing in clear.
		blobs := apptest.Files(t, filepath.Join(env.DataDir, "regions", "local"))
		if len(blobs) != 3 {
			t.Fatalf("region holds %d files, want 3 (one per version): %v", len(blobs), blobs)
		}
		secrets := []string{"Jane Doe", "contract", "Clients"}
		for _, b := range blobs {
			raw, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append(secrets, string(v1[:40])) {
				if bytes.Contains(raw, []byte(s)) || strings.Contains(b, s) {
					t.Errorf("blob %s holds %q in clear", b, s)
				}
			}
		}
		if env.App.DB.Path() != "" {
			for _, f := range []string{env.App.DB.Path(), env.App.DB.Path() + "-wal"} {
				raw, _ := os.ReadFile(f)
				for _, s := range secrets {
					if bytes.Contains(raw, []byte(s)) {
						t.Errorf("%s holds %q in clear", filepath.Base(f), s)
					}
				}
			}
		}
		var trail auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=file.*&limit=100", nil).JSON(t, &trail)
		counts := map[string]int{}
		for _, e := range trail.Items {
			counts[e.Action]++
		}
		if counts["file.upload"] != 3 || counts["file.read"] < 5 || counts["file.move"] != 1 || counts["file.restore_version"] != 1 {
			t.Errorf("audit trail of files: %v", counts)
		}
		if raw := env.Do(t, env.Token, "GET", "/api/v1/audit?limit=200", nil).Body; bytes.Contains(raw, []byte("Jane")) {
			t.Error("the audit trail names a file")
		}
	})
}

// do sends req with the test server's client and reads the answer.
func do(t *testing.T, env *apptest.Env, req *http.Request) apptest.Response {
	t.Helper()
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return apptest.Response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// TestFileIntegrity: a changed byte in a stored blob, or a blob cut
// short, gives an error — never altered content.
func TestFileIntegrity(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Integrity"})
		small, big := content(1000, "small"), content(150_000, "big")
		put(t, env, sp, "small.txt", small, 201)
		put(t, env, sp, "big.txt", big, 201)
		blob := func(name string) string {
			var vs struct{ Items []files.Version }
			id := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/", nil).Map(t)["items"].([]any)
			for _, x := range id {
				m := x.(map[string]any)
				if m["name"] == name {
					env.Do(t, env.Token, "GET", "/api/v1/files/"+m["id"].(string)+"/versions", nil).JSON(t, &vs)
				}
			}
			return filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, sp, vs.Items[0].ID)
		}
		flip := func(path string, at int64) func() {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			changed := bytes.Clone(raw)
			changed[at] ^= 0x01
			if err := os.WriteFile(path, changed, 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { os.WriteFile(path, raw, 0o600) }
		}
		smallBlob, bigBlob := blob("small.txt"), blob("big.txt")
		undo := flip(smallBlob, 100)
		r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/small.txt", nil)
		if r.Status != 500 || bytes.Contains(r.Body, []byte("small")) || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("flipped byte in a one-segment file: %d %q", r.Status, r.Body)
		}
		undo()
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/small.txt", nil); r.Status != 200 || !bytes.Equal(r.Body, small) {
			t.Errorf("after undoing the flip: %d", r.Status)
		}
		// A flip in the second segment: the first is sent, then the stream
		// stops; the bytes that came are true bytes, and fewer than all.
		undo = flip(bigBlob, 36+65536+16+500)
		req, _ := http.NewRequest("GET", env.Server.URL+"/api/v1/spaces/"+sp+"/files/big.txt", nil)
		req.Header.Set("Authorization", "Bearer "+env.Token)
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, rerr := io.ReadAll(res.Body)
		res.Body.Close()
		if rerr == nil || len(got) >= len(big) || !bytes.HasPrefix(big, got) {
			t.Errorf("flipped byte in the second segment: read error %v, %d of %d bytes, a true prefix: %v", rerr, len(got), len(big), bytes.HasPrefix(big, got))
		}
		if !strings.Contains(env.Logs.String(), "file content stopped") {
			t.Error("the broken stream was not logged")
		}
		// A range inside the changed segment fails before anything is sent.
		req.Header.Set("Range", "bytes=70000-70100")
		if r := do(t, env, req); r.Status == 206 && len(r.Body) == 101 {
			t.Errorf("a range over the changed segment answered %d bytes", len(r.Body))
		}
		undo()
		raw, _ := os.ReadFile(bigBlob)
		os.WriteFile(bigBlob, raw[:len(raw)-200], 0o600)
		res, err = env.Server.Client().Do(func() *http.Request { r := req.Clone(context.Background()); r.Header.Del("Range"); return r }())
		if err != nil {
			t.Fatal(err)
		}
		got, rerr = io.ReadAll(res.Body)
		res.Body.Close()
		if rerr == nil || !bytes.HasPrefix(big, got) || len(got) >= len(big) {
			t.Errorf("blob cut short: read error %v, %d of %d bytes", rerr, len(got), len(big))
		}
	})
}

// failAfter yields n bytes, waits for midway() to say the server is
// writing, then fails as a client that goes away.
type failAfter struct {
	n      int
	midway func()
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n == 0 {
		f.midway()
		return 0, errors.New("the client is gone")
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// TestKilledUpload: an upload that breaks off midway leaves nothing — no
// blob, no partial file, no row — and what a crash leaves is swept.
func TestKilledUpload(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Killed"})
		region := filepath.Join(env.DataDir, "regions", "local")
		for _, length := range []int64{10 << 20, -1} { // announced, and chunked
			midway := func() { // the blob is announced and partly written
				deadline := time.Now().Add(10 * time.Second)
				for countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "1" || len(apptest.Files(t, region)) != 1 {
					if time.Now().After(deadline) {
						t.Errorf("the upload (length %d) never got midway", length)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			req, _ := http.NewRequest("PUT", env.Server.URL+"/api/v1/spaces/"+sp+"/files/big.bin", &failAfter{n: 3 << 20, midway: midway})
			req.ContentLength = length
			req.Header.Set("Authorization", "Bearer "+env.Token)
			if res, err := env.Server.Client().Do(req); err == nil {
				res.Body.Close()
				t.Fatalf("the killed upload (length %d) got an answer: %d", length, res.StatusCode)
			}
			deadline := time.Now().Add(10 * time.Second)
			for countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "0" || len(apptest.Files(t, region)) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("after a killed upload (length %d): intents %s, files %v", length,
						countRows(t, env, "SELECT COUNT(*) FROM blob_intents"), apptest.Files(t, region))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM nodes") + countRows(t, env, "SELECT COUNT(*) FROM file_versions"); n != "00" {
			t.Errorf("rows left by killed uploads: %s", n)
		}

		// A crash mid-write leaves an announced blob and a partial file: the
		// sweeper leaves them while the write might be alive, then deletes.
		ctx := context.Background()
		key := env.Tenant.ID + "/" + sp + "/01a00000-0000-7000-8000-00000000dead"
		dir := filepath.Join(region, env.Tenant.ID, sp)
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "01a00000-0000-7000-8000-00000000dead"), []byte("sealed"), 0o600)
		os.WriteFile(filepath.Join(dir, "01a00000-0000-7000-8000-00000000dead.17f0a.tmp"), []byte("partial"), 0o600)
		insertIntent(t, env, key, "writing")
		if n, err := env.App.Files.Sweep(ctx); err != nil || n != 0 || len(apptest.Files(t, region)) != 2 {
			t.Fatalf("sweep of a fresh write: %d %v, files %v", n, err, apptest.Files(t, region))
		}
		env.Now.Advance(16 * time.Minute)
		if n, err := env.App.Files.Sweep(ctx); err != nil || n != 1 || len(apptest.Files(t, region)) != 0 || countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "0" {
			t.Fatalf("sweep of a stale write: %d %v, files %v", n, err, apptest.Files(t, region))
		}
	})
}

func insertIntent(t *testing.T, env *apptest.Env, key, state string) {
	t.Helper()
	err := env.App.DB.WithTx(context.Background(), func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(context.Background(), "INSERT INTO blob_intents (region, blob_key, tenant_id, state, touched_at) VALUES (?, ?, ?, ?, ?)",
			"local", key, env.Tenant.ID, state, env.Now.Now().UnixMicro())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFileBadInput: bad paths, an unknown region and the quota are
// refused with a problem naming the field, and leave nothing behind.
func TestFileBadInput(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Bad"})
		base := "/api/v1/spaces/" + sp + "/files/"
		put(t, env, sp, "ok.txt", []byte("fine"), 201)
		for _, p := range []string{"a/../b.txt", "%2e%2e/etc/passwd", "./x", "a//b", "nul%00.txt", "back%5Cslash.txt",
			strings.Repeat("n", 256) + ".txt", strings.Repeat("d/", 33) + "deep.txt", "ok.txt/inside.txt"} {
			req, _ := http.NewRequest("PUT", env.Server.URL+base+p, strings.NewReader("x"))
			req.URL.Opaque = "//" + req.URL.Host + base + p // sent exactly as written
			req.Header.Set("Authorization", "Bearer "+env.Token)
			r := do(t, env, req)
			if r.Status != 400 || r.Map(t)["field"] != "path" {
				t.Errorf("PUT %.60s: %d %s; want 400 naming the path", p, r.Status, r.Body)
			}
		}
		for _, body := range []map[string]any{{"path": "/etc/passwd"}, {"path": "../up.txt"}, {"path": "a\x00b"}, {"path": ""}} {
			if r := env.Do(t, env.Token, "PATCH", base+"ok.txt", body); r.Status != 400 || r.Map(t)["field"] != "path" {
				t.Errorf("move to %q: %d %s", body["path"], r.Status, r.Body)
			}
			if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/folders", body); r.Status != 400 || r.Map(t)["field"] != "path" {
				t.Errorf("folder %q: %d %s", body["path"], r.Status, r.Body)
			}
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "Mars", "region": "mars"}); r.Status != 400 || r.Map(t)["field"] != "region" {
			t.Errorf("unknown region: %d %s", r.Status, r.Body)
		}
		if r := env.DoRaw(t, env.Token, "PUT", base+"ok.txt/", "text/plain", "x"); r.Status == 200 || r.Status == 201 {
			t.Errorf("PUT on a path ending in '/': %d", r.Status)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/folders", map[string]any{"path": "dir"}); r.Status != 201 {
			t.Fatalf("folder: %d %s", r.Status, r.Body)
		}
		if r := env.DoRaw(t, env.Token, "PUT", base+"dir", "text/plain", "x"); r.Status != 409 {
			t.Errorf("PUT onto a folder: %d %s", r.Status, r.Body)
		}

		// The quota: refused before reading when the length is announced,
		// while reading when it is not; what fits is stored.
		if _, err := env.App.Tenants.SetQuota(context.Background(), env.Tenant.ID, 100_000); err != nil {
			t.Fatal(err)
		}
		if r := env.DoRaw(t, env.Token, "PUT", base+"huge.bin", "application/octet-stream", string(content(150_000, "x"))); r.Status != 413 || r.Map(t)["field"] != "body" {
			t.Errorf("over the quota: %d %s", r.Status, r.Body)
		}
		req, _ := http.NewRequest("PUT", env.Server.URL+base+"huge.bin", io.MultiReader(bytes.NewReader(content(150_000, "x"))))
		req.ContentLength = -1
		req.Header.Set("Authorization", "Bearer "+env.Token)
		if r := do(t, env, req); r.Status != 413 {
			t.Errorf("over the quota, chunked: %d %s", r.Status, r.Body)
		}
		put(t, env, sp, "fits.bin", content(60_000, "x"), 201)
		if r := env.DoRaw(t, env.Token, "PUT", base+"fits-too.bin", "application/octet-stream", string(content(60_000, "x"))); r.Status != 413 {
			t.Errorf("the second 60 kB: %d %s", r.Status, r.Body)
		}
		if got := countRows(t, env, "SELECT COUNT(*) FROM file_versions"); got != "2" {
			t.Errorf("%s versions stored; want 2 (ok.txt, fits.bin)", got)
		}
		if got := countRows(t, env, "SELECT COUNT(*) FROM nodes"); got != "3" {
			t.Errorf("%s items; want 3 (ok.txt, dir, fits.bin)", got)
		}
		if got := apptest.Files(t, filepath.Join(env.DataDir, "regions", "local")); len(got) != 2 {
			t.Errorf("region holds %d files; want 2: %v", len(got), got)
		}
		if got := countRows(t, env, "SELECT COUNT(*) FROM blob_intents"); got != "0" {
			t.Errorf("%s blob intents left", got)
		}
	})
}

// withRegions runs fn, on both stores, with three regions: "local" under
// the data dir, "eu" in a directory of its own, and "down", an S3 region
// on a closed port.
func withRegions(t *testing.T, fn func(t *testing.T, env *apptest.Env)) {
	regions := coretest.ThreeRegions(t)
	apptest.RunWith(t, func(c *config.Config, _ *app.Options) { regions(c) }, fn)
}

// TestFilesOnS3: the same file life — upload, ranged download, versions,
// trash and purge, a killed upload — on a real S3-compatible server, and
// the bucket holds exactly the live versions' sealed blobs.
func TestFilesOnS3(t *testing.T) {
	url := blobtest.StartS3(t)
	apptest.RunWith(t, func(c *config.Config, _ *app.Options) {
		c.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")}, {Name: "s3", URL: url}}
	}, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		bucket, err := blobstore.Open(ctx, "s3", url)
		if err != nil {
			t.Fatal(err)
		}
		defer bucket.Close()
		objects := func() []blobstore.Object {
			var out []blobstore.Object
			if err := bucket.List(ctx, env.Tenant.ID+"/", func(o blobstore.Object) error { out = append(out, o); return nil }); err != nil {
				t.Fatal(err)
			}
			return out
		}
		sp := newSpace(t, env, map[string]any{"name": "On S3", "region": "s3"})
		v1, v2 := content(150_000, "Jane Doe on S3"), content(1_000, "second")
		it := put(t, env, sp, "doc.txt", v1, 201)
		put(t, env, sp, "doc.txt", v2, 200)
		file := "/api/v1/spaces/" + sp + "/files/doc.txt"
		if r := env.Do(t, env.Token, "GET", file+"?version=1", nil); !bytes.Equal(r.Body, v1) {
			t.Fatalf("version 1 from S3: %d", r.Status)
		}
		req, _ := http.NewRequest("GET", env.Server.URL+file+"?version=1", nil)
		req.Header.Set("Authorization", "Bearer "+env.Token)
		req.Header.Set("Range", "bytes=60000-70000")
		if r := do(t, env, req); r.Status != 206 || !bytes.Equal(r.Body, v1[60000:70001]) {
			t.Errorf("range from S3: %d, %d bytes", r.Status, len(r.Body))
		}
		objs := objects()
		if len(objs) != 2 || len(apptest.Files(t, filepath.Join(env.DataDir, "regions", "local"))) != 0 {
			t.Fatalf("bucket holds %v; want the two versions, and nothing in the local region", objs)
		}
		for _, o := range objs {
			r, err := bucket.Get(ctx, o.Key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(r)
			r.Close()
			if bytes.Contains(raw, []byte("Jane Doe")) {
				t.Errorf("object %s holds content in clear", o.Key)
			}
		}
		req, _ = http.NewRequest("PUT", env.Server.URL+"/api/v1/spaces/"+sp+"/files/killed.bin", &failAfter{n: 8 << 20, midway: func() {
			for deadline := time.Now().Add(10 * time.Second); countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "1" && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
		}})
		req.ContentLength = -1
		req.Header.Set("Authorization", "Bearer "+env.Token)
		if res, err := env.Server.Client().Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("the killed upload got an answer: %d", res.StatusCode)
		}
		for deadline := time.Now().Add(10 * time.Second); countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "0"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the killed upload's announcement stayed")
			}
		}
		if got := objects(); len(got) != 2 {
			t.Errorf("after a killed upload the bucket holds %d objects; want 2", len(got))
		}
		env.Do(t, env.Token, "DELETE", file, nil)
		if r := env.SignIn(t, "acme", "owner@acme.example").Do(t, "DELETE", "/api/v1/trash/"+it.ID, nil); r.Status != 204 {
			t.Fatalf("purge: %d %s", r.Status, r.Body)
		}
		if got := objects(); len(got) != 0 {
			t.Errorf("after the purge the bucket holds %v", got)
		}
	})
}

// TestSpaceMigration: a space moves to another region — every version
// copied under a fresh key, checked, switched, the source deleted — while
// content writes are refused (409) and reads go on; a move that stops (a
// region down, a source blob missing) resumes where it stopped, or is
// called back; nothing is copied that does not read back as the original.
func TestSpaceMigration(t *testing.T) {
	withRegions(t, func(t *testing.T, env *apptest.Env) {
		euDir := strings.TrimPrefix(env.App.Config.Regions[1].URL, "file://")
		local := filepath.Join(env.DataDir, "regions", "local")
		sp := newSpace(t, env, map[string]any{"name": "Moving"})
		a1, a2, b := content(150_000, "first"), content(70_000, "second"), content(500, "bee")
		a := put(t, env, sp, "a.txt", a1, 201)
		put(t, env, sp, "a.txt", a2, 200)
		put(t, env, sp, "f/b.txt", b, 201)
		put(t, env, sp, "c.txt", content(100, "sea"), 201)
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/spaces/"+sp+"/files/c.txt", nil); r.Status != 200 {
			t.Fatalf("trash: %d", r.Status)
		}
		status := func() files.Migration {
			var m files.Migration
			env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/migration", nil).JSON(t, &m)
			return m
		}
		migrate := func(region string, want int) {
			t.Helper()
			if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/migration", map[string]any{"region": region}); r.Status != want {
				t.Fatalf("migrate to %s: %d %s; want %d", region, r.Status, r.Body, want)
			}
		}
		until := func(what string, ok func() bool) {
			t.Helper()
			for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %+v", what, status())
				}
			}
		}
		migrate("mars", 400)
		migrate("local", 400) // there already
		// (A region that is down answers 503, naming it: its semantics are
		// internal/files' TestRegions.)
		down := newSpace(t, env, map[string]any{"name": "Down", "region": "down"})
		if r := env.DoRaw(t, env.Token, "PUT", "/api/v1/spaces/"+down+"/files/c.txt", "text/plain", "to nowhere"); r.Status != 503 ||
			!strings.Contains(r.Map(t)["detail"].(string), "down") {
			t.Errorf("upload to a region that is down: %d %s", r.Status, r.Body)
		}

		// Towards a region that is down: the move stays marked, writes are
		// refused, reads go on; then it is called back. An upload under way
		// is cancelled (its parts would stay behind).
		up := startUpload(t, env, sp, map[string]any{"path": "up.bin", "size": 20})
		if r := patchPart(t, env, up.ID, 0, []byte("0123456789")); r.Status != 204 {
			t.Fatalf("a part: %d %s", r.Status, r.Body)
		}
		migrate("down", 202)
		if r := env.Do(t, env.Token, "GET", "/api/v1/uploads/"+up.ID, nil); r.Status != 404 {
			t.Errorf("an upload under way after the move began: %d", r.Status)
		}
		for _, f := range apptest.Files(t, local) {
			if strings.Contains(f, "upload-") {
				t.Errorf("a part left in the region being left: %s", f)
			}
		}
		until("the move to a region that is down to stop", func() bool {
			return strings.Contains(env.Logs.String(), "space migration stopped")
		})
		if m := status(); m.Done || m.To != "down" || m.Region != "local" || m.Moved != 0 {
			t.Errorf("a move to a region that is down: %+v", m)
		}
		if r := env.DoRaw(t, env.Token, "PUT", "/api/v1/spaces/"+sp+"/files/new.txt", "text/plain", "x"); r.Status != 409 {
			t.Errorf("an upload during a move: %d %s", r.Status, r.Body)
		}
		if r := importZip(t, env, sp, "", zipOf(t, [2]string{"z.txt", "z"})); r.Status != 409 {
			t.Errorf("an import during a move: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/a.txt", nil); r.Status != 200 || !bytes.Equal(r.Body, a2) {
			t.Errorf("a read during a move: %d", r.Status)
		}
		migrate("eu", 409) // one move at a time
		migrate("local", 202)
		until("the call-back", func() bool { return status().Done })

		// A source blob missing: the versions before it move, it does not,
		// the move stops; with the blob back it resumes and ends.
		var vs struct{ Items []files.Version }
		env.Do(t, env.Token, "GET", "/api/v1/files/"+a.ID+"/versions", nil).JSON(t, &vs)
		hidden := filepath.Join(local, env.Tenant.ID, sp, vs.Items[0].ID) // the newest version: moved last (ids in time order)
		if err := os.Rename(hidden, hidden+".away"); err != nil {
			t.Fatal(err)
		}
		migrate("eu", 202)
		until("the move to stop at the missing blob", func() bool {
			return strings.Count(env.Logs.String(), "space migration stopped") >= 2
		})
		if m := status(); m.Done || m.Moved == 0 || m.Moved >= m.Versions {
			t.Errorf("a move stopped midway: %+v", m)
		}
		if err := os.Rename(hidden+".away", hidden); err != nil {
			t.Fatal(err)
		}
		if err := env.App.Files.ResumeMigrations(context.Background()); err != nil {
			t.Fatal(err)
		}
		if m := status(); !m.Done || m.Region != "eu" || m.Versions != 4 || m.Moved != 4 {
			t.Errorf("after resuming: %+v", m)
		}
		if n, m := len(apptest.Files(t, filepath.Join(local, env.Tenant.ID, sp))), len(apptest.Files(t, filepath.Join(euDir, env.Tenant.ID, sp))); n != 0 || m != 4 {
			t.Errorf("after the move local holds %d blobs of the space (want 0), eu %d (want 4)", n, m)
		}
		for _, f := range apptest.Files(t, filepath.Join(euDir, env.Tenant.ID, sp)) {
			raw, _ := os.ReadFile(f)
			if bytes.Contains(raw, []byte("first")) || bytes.Contains(raw, []byte("second")) {
				t.Errorf("%s holds plaintext", f)
			}
		}
		for path, want := range map[string][]byte{"a.txt": a2, "a.txt?version=1": a1, "f/b.txt": b} {
			if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/"+path, nil); r.Status != 200 || !bytes.Equal(r.Body, want) {
				t.Errorf("%s after the move: %d, %d bytes", path, r.Status, len(r.Body))
			}
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp, nil); r.Map(t)["region"] != "eu" {
			t.Errorf("the space after the move: %s", r.Body)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/trash/"+firstTrashID(t, env)+"/restore", nil); r.Status != 200 {
			t.Errorf("restore from the trash after the move: %d %s", r.Status, r.Body)
		} else if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/c.txt", nil); r.Status != 200 || !bytes.Equal(r.Body, content(100, "sea")) {
			t.Errorf("the trashed file after the move: %d", r.Status)
		}
		put(t, env, sp, "new.txt", content(10, "new"), 201)
		if n := len(apptest.Files(t, filepath.Join(euDir, env.Tenant.ID, sp))); n != 5 {
			t.Errorf("a new upload after the move: eu holds %d blobs of the space; want 5", n)
		}
		// (The region that is down keeps an announcement of what the first
		// move tried to write there: the sweeper deletes it once it is up.)
		if got := countRows(t, env, "SELECT COUNT(*) FROM blob_intents WHERE region <> 'down'"); got != "0" {
			t.Errorf("%s announcements left", got)
		}
		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=space.migrat*", nil).JSON(t, &page)
		if len(page.Items) < 4 {
			t.Errorf("the moves are not audited: %+v", page.Items)
		}
	})
}

func firstTrashID(t *testing.T, env *apptest.Env) string {
	t.Helper()
	var trash struct{ Items []files.TrashItem }
	env.Do(t, env.Token, "GET", "/api/v1/trash", nil).JSON(t, &trash)
	if len(trash.Items) == 0 {
		t.Fatal("the trash is empty")
	}
	return trash.Items[0].ID
}
