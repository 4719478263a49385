package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/files"
	subjectpkg "github.com/custodia/custodia/internal/subject"
)

// patchPart sends body as the part of upload id that starts at offset.
func patchPart(t *testing.T, env *apptest.Env, id string, offset int64, body []byte) apptest.Response {
	t.Helper()
	return patchPartAs(t, env, env.Token, id, offset, body)
}

func patchPartAs(t *testing.T, env *apptest.Env, token, id string, offset int64, body []byte) apptest.Response {
	t.Helper()
	req, _ := http.NewRequest("PATCH", env.Server.URL+"/api/v1/uploads/"+id, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	return do(t, env, req)
}

func startUpload(t *testing.T, env *apptest.Env, sp string, body map[string]any) files.UploadSession {
	t.Helper()
	r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/uploads", body)
	if r.Status != 201 {
		t.Fatalf("start an upload: %d %s", r.Status, r.Body)
	}
	var u files.UploadSession
	r.JSON(t, &u)
	return u
}

// TestResumableUpload: a file sent in parts, one of them killed midway and
// one at a wrong offset, arrives whole; parts are sealed in the space's
// region while it is under way and gone after; a session is its owner's
// only; cancelled and expired sessions leave nothing.
func TestResumableUpload(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Resumable"})
		region := filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, sp)
		body := content(300_000, "Jane Doe's scan, resumable")
		u := startUpload(t, env, sp, map[string]any{"path": "scans/jane.pdf", "size": len(body), "content_type": "application/pdf"})
		if u.Offset != 0 || u.Size != int64(len(body)) || u.Path != "scans/jane.pdf" || !u.ExpiresAt.After(time.Now()) {
			t.Fatalf("session: %+v", u)
		}
		if r := patchPart(t, env, u.ID, 0, body[:100_000]); r.Status != 204 || r.Header.Get("Upload-Offset") != "100000" {
			t.Fatalf("first part: %d %s %q", r.Status, r.Body, r.Header.Get("Upload-Offset"))
		}
		if r := patchPart(t, env, u.ID, 0, body[100_000:150_000]); r.Status != 409 || r.Header.Get("Upload-Offset") != "100000" {
			t.Errorf("a part at a wrong offset: %d %s %q", r.Status, r.Body, r.Header.Get("Upload-Offset"))
		}
		parts := apptest.Files(t, region)
		if len(parts) != 1 || !strings.Contains(parts[0], "upload-"+u.ID) {
			t.Fatalf("the region while under way: %v", parts)
		}
		if raw, _ := os.ReadFile(parts[0]); bytes.Contains(raw, []byte("Jane Doe")) {
			t.Error("a part holds plaintext")
		}
		var res files.Residency
		env.Do(t, env.Token, "GET", "/api/v1/residency", nil).JSON(t, &res)
		if len(res.Spaces) != 1 || res.Spaces[0].Objects != 1 || res.Regions[0].Objects != 1 || res.Regions[0].Bytes < 100_000 {
			t.Errorf("the residency report leaves out the part under way: %+v %+v", res.Spaces, res.Regions)
		}

		// A part killed midway stores nothing: the upload stays where it was.
		midway := func() {
			for deadline := time.Now().Add(10 * time.Second); len(apptest.Files(t, region)) < 2; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("the killed part never got midway")
					return
				}
			}
		}
		req, _ := http.NewRequest("PATCH", env.Server.URL+"/api/v1/uploads/"+u.ID, &failAfter{n: 150_000, midway: midway})
		req.ContentLength = 200_000
		req.Header.Set("Authorization", "Bearer "+env.Token)
		req.Header.Set("Upload-Offset", "100000")
		if res, err := env.Server.Client().Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("the killed part got an answer: %d", res.StatusCode)
		}
		for deadline := time.Now().Add(10 * time.Second); len(apptest.Files(t, region)) != 1 || countRows(t, env, "SELECT COUNT(*) FROM blob_intents") != "0"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after a killed part: %v, %s intents", apptest.Files(t, region), countRows(t, env, "SELECT COUNT(*) FROM blob_intents"))
			}
		}
		var st files.UploadSession
		if env.Do(t, env.Token, "GET", "/api/v1/uploads/"+u.ID, nil).JSON(t, &st); st.Offset != 100_000 {
			t.Errorf("after a killed part the upload is at %d", st.Offset)
		}
		noOffset, _ := http.NewRequest("PATCH", env.Server.URL+"/api/v1/uploads/"+u.ID, strings.NewReader("x"))
		noOffset.Header.Set("Authorization", "Bearer "+env.Token)
		if r := do(t, env, noOffset); r.Status != 400 || r.Map(t)["field"] != "Upload-Offset" {
			t.Errorf("a part without Upload-Offset: %d %s", r.Status, r.Body)
		}
		if r := patchPart(t, env, u.ID, 100_000, content(250_000, "too much")); r.Status != 400 || !strings.Contains(string(r.Body), `"field":"body"`) {
			t.Errorf("a part past the size: %d %s", r.Status, r.Body)
		}
		env.AddUser(t, "admin@acme.example", "admin", apptest.Password)
		if r := env.SignIn(t, "acme", "admin@acme.example").Do(t, "GET", "/api/v1/uploads/"+u.ID, nil); r.Status != 404 {
			t.Errorf("someone else's upload: %d", r.Status)
		}

		// The rest: the file is stored as any upload, the session and its
		// parts are gone.
		r := patchPart(t, env, u.ID, 100_000, body[100_000:])
		if r.Status != 201 {
			t.Fatalf("last part: %d %s", r.Status, r.Body)
		}
		var it files.Item
		if r.JSON(t, &it); it.Size != int64(len(body)) || it.Version != 1 || it.ContentType != "application/pdf" {
			t.Errorf("the uploaded file: %+v", it)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/scans/jane.pdf", nil); r.Status != 200 || !bytes.Equal(r.Body, body) {
			t.Errorf("download: %d, %d bytes", r.Status, len(r.Body))
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/uploads/"+u.ID, nil); r.Status != 404 {
			t.Errorf("a finished upload: %d", r.Status)
		}
		if left := apptest.Files(t, region); len(left) != 1 || strings.Contains(left[0], "upload-") {
			t.Errorf("the region after the upload: %v", left)
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM upload_parts") + countRows(t, env, "SELECT COUNT(*) FROM blob_intents"); n != "00" {
			t.Errorf("parts or intents left: %s", n)
		}

		// A new version the same way, and an empty file.
		v2 := startUpload(t, env, sp, map[string]any{"path": "scans/jane.pdf", "size": 10})
		if r := patchPart(t, env, v2.ID, 0, []byte("0123456789")); r.Status != 200 || r.Map(t)["version"] != float64(2) {
			t.Errorf("a version in one part: %d %s", r.Status, r.Body)
		}
		empty := startUpload(t, env, sp, map[string]any{"path": "empty.txt", "size": 0})
		if r := patchPart(t, env, empty.ID, 0, nil); r.Status != 201 {
			t.Errorf("an empty file: %d %s", r.Status, r.Body)
		}

		// Two parts for the same offset at once: one is kept, whole.
		race := startUpload(t, env, sp, map[string]any{"path": "race.bin", "size": 4 << 20})
		a, b := bytes.Repeat([]byte("a"), 2<<20), bytes.Repeat([]byte("b"), 2<<20)
		statuses := make(chan int, 2)
		for _, part := range [][]byte{a, b} {
			go func() { statuses <- patchPart(t, env, race.ID, 0, part).Status }()
		}
		if s1, s2 := <-statuses, <-statuses; s1+s2 != 204+409 {
			t.Errorf("two parts at once: %d and %d; want one 204 and one 409", s1, s2)
		}
		var rs files.UploadSession
		env.Do(t, env.Token, "GET", "/api/v1/uploads/"+race.ID, nil).JSON(t, &rs)
		if r := patchPart(t, env, race.ID, rs.Offset, a); r.Status != 201 {
			t.Fatalf("after the race: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/race.bin", nil); r.Status != 200 || len(r.Body) != 4<<20 ||
			!bytes.Equal(r.Body[2<<20:], a) || !bytes.Equal(r.Body[:2<<20], a) && !bytes.Equal(r.Body[:2<<20], b) {
			t.Errorf("the raced file: %d, %d bytes", r.Status, len(r.Body))
		}

		// Bad sessions change nothing.
		for _, c := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"path": "../x", "size": 1}, "path"},
			{map[string]any{"path": "x"}, "size"},
			{map[string]any{"path": "x", "size": -1}, "size"},
			{map[string]any{"path": "", "size": 1}, "path"},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/uploads", c.body); r.Status != 400 || r.Map(t)["field"] != c.field {
				t.Errorf("%v: %d %s", c.body, r.Status, r.Body)
			}
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/uploads", map[string]any{"path": "scans", "size": 1}); r.Status != 409 {
			t.Errorf("an upload onto a folder: %d %s", r.Status, r.Body)
		}

		// Cancelled and expired sessions leave nothing.
		c := startUpload(t, env, sp, map[string]any{"path": "c.bin", "size": 20})
		patchPart(t, env, c.ID, 0, []byte("0123456789"))
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/uploads/"+c.ID, nil); r.Status != 204 {
			t.Errorf("cancel: %d %s", r.Status, r.Body)
		}
		e := startUpload(t, env, sp, map[string]any{"path": "e.bin", "size": 20})
		patchPart(t, env, e.ID, 0, []byte("0123456789"))
		if n, err := env.App.Files.ExpireUploads(context.Background()); err != nil || n != 0 {
			t.Errorf("expire a live session: %d %v", n, err)
		}
		env.Now.Advance(files.UploadTTL + time.Minute)
		if n, err := env.App.Files.ExpireUploads(context.Background()); err != nil || n != 1 {
			t.Errorf("expire: %d %v", n, err)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/uploads/"+e.ID, nil); r.Status != 404 {
			t.Errorf("an expired upload: %d", r.Status)
		}
		for _, f := range apptest.Files(t, region) {
			if strings.Contains(f, "upload-") {
				t.Errorf("a part is left: %s", f)
			}
		}
		// Purging a space ends its uploads.
		doomed := newSpace(t, env, map[string]any{"name": "Doomed"})
		d := startUpload(t, env, doomed, map[string]any{"path": "d.bin", "size": 20})
		patchPart(t, env, d.ID, 0, []byte("0123456789"))
		trashed := env.Do(t, env.Token, "DELETE", "/api/v1/spaces/"+doomed, nil).Map(t)["id"].(string)
		if r := env.SignIn(t, "acme", "owner@acme.example").Do(t, "DELETE", "/api/v1/trash/"+trashed, nil); r.Status != 204 {
			t.Fatalf("purge a space with an upload under way: %d %s", r.Status, r.Body)
		}
		if left := apptest.Files(t, filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, doomed)); len(left) != 0 {
			t.Errorf("left by the purged space's upload: %v", left)
		}
		if n := countRows(t, env, "SELECT COUNT(*) FROM upload_sessions") + countRows(t, env, "SELECT COUNT(*) FROM blob_intents"); n != "00" {
			t.Errorf("sessions or intents left: %s", n)
		}

		// Erasing a member's account ends their uploads under way.
		member := env.AddUser(t, "up@acme.example", "member", apptest.Password)
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/grants", map[string]any{"user_id": member.ID, "access": "editor"}); r.Status != 200 {
			t.Fatalf("grant: %d %s", r.Status, r.Body)
		}
		token, _, err := env.App.Identity.CreateToken(context.Background(), env.Tenant.ID, "up@acme.example", "uploads", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		mr := env.Do(t, token, "POST", "/api/v1/spaces/"+sp+"/uploads", map[string]any{"path": "member.bin", "size": 20})
		if mr.Status != 201 {
			t.Fatalf("the member's upload: %d %s", mr.Status, mr.Body)
		}
		mid := mr.Map(t)["id"].(string)
		if r := patchPartAs(t, env, token, mid, 0, []byte("0123456789")); r.Status != 204 {
			t.Fatalf("the member's part: %d %s", r.Status, r.Body)
		}
		cert, err := env.App.Subjects.Erase(context.Background(), env.Tenant.ID, member.SubjectID, subjectpkg.EraseInput{Reason: "test", Accounts: true})
		if err != nil {
			t.Fatal(err)
		}
		if cert.Erased["upload_sessions"] != 1 || cert.Erased["upload_parts"] != 1 {
			t.Errorf("the certificate of the member's erasure: %v", cert.Erased)
		}
		for _, f := range apptest.Files(t, region) {
			if strings.Contains(f, "upload-"+mid) {
				t.Errorf("the erased member's part is left: %s", f)
			}
		}

		// At most MaxOpenUploads at once per user.
		for i := range files.MaxOpenUploads {
			startUpload(t, env, sp, map[string]any{"path": fmt.Sprintf("many/%d.bin", i), "size": 1})
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/spaces/"+sp+"/uploads", map[string]any{"path": "many/one-more.bin", "size": 1}); r.Status != 409 {
			t.Errorf("upload %d: %d %s", files.MaxOpenUploads+1, r.Status, r.Body)
		}

		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=upload.*", nil).JSON(t, &page)
		actions := map[string]int{}
		for _, e := range page.Items {
			actions[e.Action]++
		}
		if actions["upload.start"] != 8+files.MaxOpenUploads || actions["upload.cancel"] != 1 {
			t.Errorf("uploads audited: %v", actions)
		}
	})
}

// TestUploadCompletesOnce: a completion that failed (here, over the
// quota) leaves every part in place for a retry, and two retries at once
// make the file once.
func TestUploadCompletesOnce(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		sp := newSpace(t, env, map[string]any{"name": "Once"})
		v := put(t, env, sp, "v.bin", content(1000, "first"), 201)
		body := content(4<<20, "second version")
		u := startUpload(t, env, sp, map[string]any{"path": "v.bin", "size": len(body)})
		if r := patchPart(t, env, u.ID, 0, body[:2<<20]); r.Status != 204 {
			t.Fatalf("first part: %d %s", r.Status, r.Body)
		}
		if _, err := env.App.Tenants.SetQuota(ctx, env.Tenant.ID, 3<<20); err != nil {
			t.Fatal(err)
		}
		if r := patchPart(t, env, u.ID, 2<<20, body[2<<20:]); r.Status != 413 {
			t.Fatalf("last part over the quota: %d %s", r.Status, r.Body)
		}
		var st files.UploadSession
		if env.Do(t, env.Token, "GET", "/api/v1/uploads/"+u.ID, nil).JSON(t, &st); st.Offset != int64(len(body)) {
			t.Fatalf("after a failed completion: %+v", st)
		}
		if _, err := env.App.Tenants.SetQuota(ctx, env.Tenant.ID, 0); err != nil {
			t.Fatal(err)
		}
		statuses := make(chan int, 2)
		for range 2 {
			go func() { statuses <- patchPart(t, env, u.ID, int64(len(body)), nil).Status }()
		}
		s1, s2 := <-statuses, <-statuses
		if s1 != 200 && s2 != 200 || s1 == s2 {
			t.Errorf("two retries at once: %d and %d; want one 200", s1, s2)
		}
		var vs struct{ Items []files.Version }
		if env.Do(t, env.Token, "GET", "/api/v1/files/"+v.ID+"/versions", nil).JSON(t, &vs); len(vs.Items) != 2 {
			t.Errorf("the file has %d versions; want 2", len(vs.Items))
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/v.bin", nil); !bytes.Equal(r.Body, body) {
			t.Errorf("the new version: %d bytes", len(r.Body))
		}
	})
}
