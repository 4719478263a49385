package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/export"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

// TestSubjectFiles: files and folders linked to a person travel with
// their access export (every version, also from the trash and from inside
// a linked folder, byte for byte) and go with their erasure — all of it,
// blobs included — while what is not theirs stays; under the tenant
// policy "keep" only the links go.
func TestSubjectFiles(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Clients"})
		ann := createSubject(t, env, env.Token, map[string]any{"email": "ann@example.org"})["id"].(string)
		bo := createSubject(t, env, env.Token, map[string]any{"email": "bo@example.org"})["id"].(string)
		contract1, contract2 := content(150_000, "Ann's contract, draft"), content(1000, "Ann's contract, signed")
		contract := put(t, env, sp, "Ann/contract.pdf", contract1, 201)
		put(t, env, sp, "Ann/contract.pdf", contract2, 200)
		letter := put(t, env, sp, "Ann/letters/2026/jan.pdf", content(500, "Dear Ann"), 201)
		old := put(t, env, sp, "Ann/letters/old.pdf", content(300, "An old letter to Ann"), 201)
		gone := put(t, env, sp, "Ann/note.pdf", content(200, "A note on Ann"), 201)
		other := put(t, env, sp, "Bo/contract.pdf", content(400, "Bo's contract"), 201)
		var folders struct{ Items []files.Item }
		env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/Ann/", nil).JSON(t, &folders)
		var lettersID string
		for _, it := range folders.Items {
			if it.Name == "letters" {
				lettersID = it.ID
			}
		}
		link := func(item, subj string, want int) {
			t.Helper()
			if r := env.Do(t, env.Token, "PUT", "/api/v1/files/"+item+"/subjects/"+subj, nil); r.Status != want {
				t.Fatalf("link %s to %s: %d %s; want %d", item, subj, r.Status, r.Body, want)
			}
		}
		link(contract.ID, ann, 201)
		link(contract.ID, ann, 200) // again: nothing changes
		link(contract.ID, bo, 201)  // a contract between the two
		link(lettersID, ann, 201)
		link(gone.ID, ann, 201)
		link(other.ID, bo, 201)
		link(contract.ID, "01a00000-0000-7000-8000-000000000000", 404)
		link("01a00000-0000-7000-8000-000000000000", ann, 404)
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/spaces/"+sp+"/files/Ann/note.pdf", nil); r.Status != 200 {
			t.Fatalf("trash the note: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/spaces/"+sp+"/files/Ann/letters/old.pdf", nil); r.Status != 200 {
			t.Fatalf("trash the old letter: %d %s", r.Status, r.Body)
		}
		link(gone.ID, bo, 404) // in the trash: nothing new links to it

		var linked struct{ Items []files.Linked }
		env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/files", nil).JSON(t, &linked)
		got := map[string]bool{}
		for _, l := range linked.Items {
			got[l.Path] = l.InTrash
		}
		if len(got) != 3 || got["Ann/contract.pdf"] || got["Ann/letters"] || !got["Ann/note.pdf"] {
			t.Errorf("Ann's files: %+v", linked.Items)
		}
		var links struct{ Items []files.Link }
		if env.Do(t, env.Token, "GET", "/api/v1/files/"+contract.ID+"/subjects", nil).JSON(t, &links); len(links.Items) != 2 {
			t.Errorf("the contract's links: %+v", links.Items)
		}

		// The export: every version of what is linked to Ann, as stored.
		r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/export", nil)
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/zip" {
			t.Fatalf("export: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		_, entries := unzip(t, r.Body)
		var held export.Held
		if err := json.Unmarshal(entries["subject.json"], &held); err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{
			"files/" + contract.ID + "/v1/contract.pdf": contract1,
			"files/" + contract.ID + "/v2/contract.pdf": contract2,
			"files/" + letter.ID + "/v1/jan.pdf":        content(500, "Dear Ann"),
			"files/" + old.ID + "/v1/old.pdf":           content(300, "An old letter to Ann"),
			"files/" + gone.ID + "/v1/note.pdf":         content(200, "A note on Ann"),
		}
		if len(held.Files) != len(want) {
			t.Errorf("subject.json lists %d file versions; want %d: %+v", len(held.Files), len(want), held.Files)
		}
		for _, f := range held.Files {
			if !bytes.Equal(entries[f.ZipName], want[f.ZipName]) {
				t.Errorf("%s (%s) in the zip: %d bytes; want %d", f.ZipName, f.Path, len(entries[f.ZipName]), len(want[f.ZipName]))
			}
		}
		for name := range entries {
			if strings.HasPrefix(name, "files/"+other.ID) {
				t.Errorf("Bo's file is in Ann's export: %s", name)
			}
		}

		// A changed byte deep in a linked file cuts the export: the client
		// sees a broken transfer, never a zip that looks whole.
		blob := filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, sp, versionID(t, env, contract.ID, 1))
		restore := flipDeep(t, blob)
		wantCut(t, env, "/api/v1/subjects/"+ann+"/export", "access export")
		restore()
		// A blob missing is found before the first byte: a problem, not a
		// cut export.
		if err := os.Rename(blob, blob+".away"); err != nil {
			t.Fatal(err)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+ann+"/export", nil); r.Status != 500 ||
			r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("an export with a blob missing: %d %s %.100s", r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		if err := os.Rename(blob+".away", blob); err != nil {
			t.Fatal(err)
		}

		// Erasing Ann deletes what is linked to her, also from the trash
		// and from inside the linked folder, blobs included; Bo's file and
		// the folder above stay, and Bo loses the link to the shared
		// contract that went.
		var doomed []string
		for _, f := range held.Files {
			doomed = append(doomed, filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, sp, f.VersionID))
		}
		var cert subject.Certificate
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/erase", nil); r.Status != 200 {
			t.Fatalf("erase: %d %s", r.Status, r.Body)
		} else {
			r.JSON(t, &cert)
		}
		// contract, letters, 2026, jan, old, note.
		if cert.Erased["nodes"] != 6 || cert.Erased["file_versions"] != 5 || cert.Erased["file_subjects"] != 4 {
			t.Errorf("certificate counts: %v", cert.Erased)
		}
		for _, p := range doomed {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("blob %s is still there after the erasure: %v", p, err)
			}
		}
		if n := sqldbtest.Strings(t, env.App.DB, "SELECT blob_key FROM blob_intents"); len(n) != 0 {
			t.Errorf("announcements left: %v", n)
		}
		for _, path := range []string{"Ann/contract.pdf", "Ann/letters/2026/jan.pdf"} {
			if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/"+path, nil); r.Status != 404 {
				t.Errorf("%s after the erasure: %d", path, r.Status)
			}
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/Bo/contract.pdf", nil); r.Status != 200 {
			t.Errorf("Bo's contract after Ann's erasure: %d", r.Status)
		}
		env.Do(t, env.Token, "GET", "/api/v1/subjects/"+bo+"/files", nil).JSON(t, &linked)
		if len(linked.Items) != 1 || linked.Items[0].ID != other.ID {
			t.Errorf("Bo's files after Ann's erasure: %+v", linked.Items)
		}
		var trash struct{ Items []files.TrashItem }
		env.Do(t, env.Token, "GET", "/api/v1/trash", nil).JSON(t, &trash)
		if len(trash.Items) != 0 {
			t.Errorf("the trash after the erasure: %+v", trash.Items)
		}
		link(other.ID, ann, 410) // erased

		// Policy "keep": the file stays, the link goes.
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "UTC", "linked_files_on_erasure": "shred"}); r.Status != 400 ||
			!strings.Contains(string(r.Body), "linked_files_on_erasure") {
			t.Errorf("a policy that is not one: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "UTC", "linked_files_on_erasure": "keep"}); r.Status != 200 {
			t.Fatalf("policy keep: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+bo+"/erase", nil); r.Status != 200 {
			t.Fatalf("erase Bo: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/spaces/"+sp+"/files/Bo/contract.pdf", nil); r.Status != 200 || !bytes.Equal(r.Body, content(400, "Bo's contract")) {
			t.Errorf("Bo's contract under policy keep: %d", r.Status)
		}
		if env.Do(t, env.Token, "GET", "/api/v1/files/"+other.ID+"/subjects", nil).JSON(t, &links); len(links.Items) != 0 {
			t.Errorf("links left under policy keep: %+v", links.Items)
		}

		// Unlink.
		cy := createSubject(t, env, env.Token, map[string]any{"email": "cy@example.org"})["id"].(string)
		link(other.ID, cy, 201)
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/files/"+other.ID+"/subjects/"+cy, nil); r.Status != 204 {
			t.Errorf("unlink: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/files/"+other.ID+"/subjects/"+cy, nil); r.Status != 404 {
			t.Errorf("unlink again: %d %s", r.Status, r.Body)
		}
		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=file.*", nil).JSON(t, &page)
		var actions []string
		for _, e := range page.Items {
			actions = append(actions, e.Action)
		}
		if !slices.Contains(actions, "file.link") || !slices.Contains(actions, "file.unlink") {
			t.Errorf("link and unlink are not audited: %v", actions)
		}
	})
}

// versionID is the id of version n of a file.
func versionID(t *testing.T, env *apptest.Env, fileID string, n int) string {
	t.Helper()
	var vs struct{ Items []files.Version }
	env.Do(t, env.Token, "GET", "/api/v1/files/"+fileID+"/versions", nil).JSON(t, &vs)
	for _, v := range vs.Items {
		if v.Version == n {
			return v.ID
		}
	}
	t.Fatalf("file %s has no version %d", fileID, n)
	return ""
}
