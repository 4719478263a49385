package api_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestFolderGrants walks a member through grants on folders only: deny
// by default, a viewer grant on a folder reaching everything inside it
// and nothing beside it, a group's editor grant on a folder below raising
// access there, the grants listed where they apply, moves that need an
// editor at both ends, the trash, revocation, and a purge taking the
// folder's grants with it.
func TestFolderGrants(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		sp := newSpace(t, env, map[string]any{"name": "Clients"})
		contract := put(t, env, sp, "acme/contracts/c1.pdf", []byte("Acme's contract with Jane Doe"), 201)
		put(t, env, sp, "acme/notes.txt", []byte("notes on Acme"), 201)
		other := put(t, env, sp, "globex/g.txt", []byte("Globex's secrets"), 201)
		put(t, env, sp, "top.txt", []byte("for the whole space"), 201)
		op := principalOf(t, env, "owner@acme.example")
		id := func(path string) string {
			it, err := env.App.Files.Stat(t.Context(), op, sp, path)
			if err != nil {
				t.Fatal(err)
			}
			return it.ID
		}
		acme, contracts := id("acme"), id("acme/contracts")
		ann := env.AddUser(t, "ann@acme.example", "member", apptest.Password)
		bob := env.AddUser(t, "bob@acme.example", "member", apptest.Password)
		as := env.SignIn(t, "acme", "ann@acme.example")
		file := func(path string) string { return "/api/v1/spaces/" + sp + "/files/" + path }
		status := func(method, path string, want int) apptest.Response {
			t.Helper()
			r := as.Do(t, method, path, nil)
			if r.Status != want {
				t.Errorf("Ann: %s %s: %d %.200s; want %d", method, path, r.Status, r.Body, want)
			}
			return r
		}
		// hidden: what Ann gets for path is exactly what a path that does
		// not exist gets.
		hidden := func(path string) {
			t.Helper()
			got, want := status("GET", file(path), 404).Map(t), status("GET", file("no/such/thing.txt"), 404).Map(t)
			delete(got, "request_id")
			delete(want, "request_id")
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Ann sees %s answered %v, a missing path %v", path, got, want)
			}
		}

		// Deny by default.
		hidden("acme")
		hidden("acme/contracts/c1.pdf")

		// A viewer grant on acme: acme and everything in it, nothing else.
		grant := func(folder string, body map[string]any, want int) space.Grant {
			t.Helper()
			r := env.Do(t, env.Token, "POST", "/api/v1/files/"+folder+"/grants", body)
			if r.Status != want {
				t.Fatalf("grant on %s: %d %s; want %d", folder, r.Status, r.Body, want)
			}
			var g space.Grant
			if want == 200 {
				r.JSON(t, &g)
			}
			return g
		}
		viewer := grant(acme, map[string]any{"user_id": ann.ID, "access": "viewer"}, 200)
		if viewer.FolderID != acme || viewer.Access != space.Viewer || viewer.UserID != ann.ID {
			t.Errorf("grant: %+v", viewer)
		}
		var listing struct{ Items []files.Item }
		if status("GET", file("acme"), 200).JSON(t, &listing); len(listing.Items) != 2 {
			t.Errorf("Ann lists acme: %+v", listing.Items)
		}
		if r := status("GET", file("acme/contracts/c1.pdf"), 200); string(r.Body) != "Acme's contract with Jane Doe" {
			t.Errorf("Ann downloads the contract: %q", r.Body)
		}
		status("GET", "/api/v1/files/"+contract.ID+"/versions", 200)
		hidden("globex/g.txt")
		hidden("top.txt")
		status("GET", file(""), 404)
		status("GET", "/api/v1/spaces/"+sp, 404)
		status("GET", "/api/v1/files/"+other.ID+"/versions", 404)
		var spaces struct{ Items []space.Space }
		if status("GET", "/api/v1/spaces", 200).JSON(t, &spaces); len(spaces.Items) != 0 {
			t.Errorf("Ann's spaces: %+v (her grant is on a folder)", spaces.Items)
		}
		var shared struct{ Items []files.SharedFolder }
		if status("GET", "/api/v1/shared", 200).JSON(t, &shared); len(shared.Items) != 1 || shared.Items[0].ID != acme ||
			shared.Items[0].Path != "acme" || shared.Items[0].SpaceID != sp || shared.Items[0].Access != space.Viewer {
			t.Errorf("shared with Ann: %+v", shared.Items)
		}
		names, _ := unzip(t, status("GET", "/api/v1/spaces/"+sp+"/export?path=acme", 200).Body)
		if !slices.Contains(names, "contracts/c1.pdf") || !slices.Contains(names, "notes.txt") || len(names) != 3 {
			t.Errorf("Ann exports acme: %v", names)
		}
		status("GET", "/api/v1/spaces/"+sp+"/export", 404)
		// A viewer writes nothing.
		if r := as.DoRaw(t, "PUT", file("acme/new.txt"), "text/plain", "x"); r.Status != 403 {
			t.Errorf("Ann (viewer) uploads: %d %s", r.Status, r.Body)
		}
		if r := as.DoRaw(t, "PUT", file("globex/new.txt"), "text/plain", "x"); r.Status != 404 {
			t.Errorf("Ann uploads beside her folder: %d %s", r.Status, r.Body)
		}
		if r := as.Do(t, "POST", "/api/v1/spaces/"+sp+"/folders", map[string]any{"path": "acme/more"}); r.Status != 403 {
			t.Errorf("Ann (viewer) makes a folder: %d %s", r.Status, r.Body)
		}
		status("GET", "/api/v1/files/"+acme+"/grants", 403)
		if r := as.Do(t, "POST", "/api/v1/files/"+acme+"/grants", map[string]any{"user_id": bob.ID, "access": "viewer"}); r.Status != 403 {
			t.Errorf("Ann (viewer) grants: %d %s", r.Status, r.Body)
		}

		// A group's editor grant on acme/contracts raises Ann there only.
		g := env.Do(t, env.Token, "POST", "/api/v1/groups", map[string]any{"name": "Lawyers"}).Map(t)["id"].(string)
		if r := env.Do(t, env.Token, "PUT", "/api/v1/groups/"+g+"/members/"+ann.ID, map[string]any{}); r.Status != 204 {
			t.Fatalf("add Ann to the group: %d %s", r.Status, r.Body)
		}
		editors := grant(contracts, map[string]any{"group_id": g, "access": "editor"}, 200)
		if r := as.DoRaw(t, "PUT", file("acme/contracts/c2.pdf"), "application/pdf", "a second contract"); r.Status != 201 {
			t.Errorf("Ann (editor of contracts) uploads: %d %s", r.Status, r.Body)
		}
		if r := as.DoRaw(t, "PUT", file("acme/x.txt"), "text/plain", "x"); r.Status != 403 {
			t.Errorf("Ann uploads into acme, where she views: %d %s", r.Status, r.Body)
		}
		var gs struct{ Items []space.Grant }
		status("GET", "/api/v1/files/"+contracts+"/grants", 200).JSON(t, &gs)
		kinds := map[string]bool{}
		for _, x := range gs.Items {
			switch {
			case x.FolderID == "" && x.Inherited && x.Access == space.Editor:
				kinds["space"] = true // the owner's, as the space's maker
			case x.ID == viewer.ID && x.FolderID == acme && x.Inherited:
				kinds["acme"] = true
			case x.ID == editors.ID && x.FolderID == contracts && !x.Inherited && x.GroupID == g:
				kinds["contracts"] = true
			}
		}
		if len(kinds) != 3 || len(gs.Items) != 3 {
			t.Errorf("grants reaching contracts: %+v", gs.Items)
		}
		// She grants what she holds, where she holds it.
		if r := as.Do(t, "POST", "/api/v1/files/"+contracts+"/grants", map[string]any{"user_id": bob.ID, "access": "editor"}); r.Status != 200 {
			t.Errorf("Ann grants Bob on contracts: %d %s", r.Status, r.Body)
		}
		if r := as.Do(t, "POST", "/api/v1/files/"+acme+"/grants", map[string]any{"user_id": bob.ID, "access": "viewer"}); r.Status != 403 {
			t.Errorf("Ann grants Bob on acme: %d %s", r.Status, r.Body)
		}
		// An inherited grant is revoked where it is.
		if r := as.Do(t, "DELETE", "/api/v1/files/"+contracts+"/grants/"+viewer.ID, nil); r.Status != 404 {
			t.Errorf("revoke an inherited grant below: %d %s", r.Status, r.Body)
		}
		// A file carries no grants.
		if r := env.Do(t, env.Token, "POST", "/api/v1/files/"+contract.ID+"/grants", map[string]any{"user_id": bob.ID, "access": "viewer"}); r.Status != 400 ||
			!strings.Contains(string(r.Body), `"field":"id"`) {
			t.Errorf("grant on a file: %d %s", r.Status, r.Body)
		}

		// Moves need an editor where the item is and where it goes.
		if r := as.Do(t, "PATCH", file("acme/contracts/c2.pdf"), map[string]any{"path": "acme/c2.pdf"}); r.Status != 403 {
			t.Errorf("Ann moves out of contracts into acme: %d %s", r.Status, r.Body)
		}
		if r := as.Do(t, "PATCH", file("acme/contracts/c2.pdf"), map[string]any{"path": "acme/contracts/c2-signed.pdf"}); r.Status != 200 {
			t.Errorf("Ann renames in contracts: %d %s", r.Status, r.Body)
		}

		// The folder she was granted is not hers to rename, move or trash:
		// each changes the folder above it, where she is no editor.
		for _, c := range []struct {
			method string
			body   any
		}{{"PATCH", map[string]any{"path": "acme/contracts-old"}}, {"DELETE", nil}} {
			if r := as.Do(t, c.method, file("acme/contracts"), c.body); r.Status != 403 {
				t.Errorf("Ann: %s the granted folder itself %v: %d %s", c.method, c.body, r.Status, r.Body)
			}
		}
		status("GET", file("acme/contracts/"), 200)

		// The trash: what she trashed, while she is an editor where it was.
		trashed := status("DELETE", file("acme/contracts/c2-signed.pdf"), 200).Map(t)["id"].(string)
		if r := status("GET", "/api/v1/trash", 200); !bytes.Contains(r.Body, []byte(trashed)) {
			t.Errorf("Ann's trash: %s", r.Body)
		}
		status("POST", "/api/v1/trash/"+trashed+"/restore", 200)
		status("DELETE", file("acme/contracts/c2-signed.pdf"), 200)
		// With its folder gone it would come back at the top of the space,
		// where Ann is no editor.
		contractsTrash := env.Do(t, env.Token, "DELETE", file("acme/contracts"), nil).Map(t)["id"].(string)
		status("POST", "/api/v1/trash/"+trashed+"/restore", 403)
		if r := env.Do(t, env.Token, "POST", "/api/v1/trash/"+contractsTrash+"/restore", nil); r.Status != 200 {
			t.Fatalf("restore contracts: %d %s", r.Status, r.Body)
		}

		// Revoking the group's grant: Ann views contracts again, and no
		// longer reaches what she trashed there.
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/files/"+contracts+"/grants/"+editors.ID, nil); r.Status != 204 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		if r := as.DoRaw(t, "PUT", file("acme/contracts/c3.pdf"), "application/pdf", "x"); r.Status != 403 {
			t.Errorf("Ann uploads after the revocation: %d %s", r.Status, r.Body)
		}
		if r := status("GET", "/api/v1/trash", 200); bytes.Contains(r.Body, []byte(trashed)) {
			t.Errorf("Ann still sees what she trashed in contracts: %s", r.Body)
		}
		status("POST", "/api/v1/trash/"+trashed+"/restore", 404)

		// Her folder in the trash takes her access with it.
		status("DELETE", file("acme"), 403)
		acmeTrash := env.Do(t, env.Token, "DELETE", file("acme"), nil).Map(t)["id"].(string)
		hidden("acme/notes.txt")
		if status("GET", "/api/v1/shared", 200).JSON(t, &shared); len(shared.Items) != 0 {
			t.Errorf("shared with Ann, her folder in the trash: %+v", shared.Items)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/trash/"+acmeTrash+"/restore", nil); r.Status != 200 {
			t.Fatalf("restore acme: %d %s", r.Status, r.Body)
		}
		status("GET", file("acme/notes.txt"), 200)

		// Revoking the viewer grant hides acme again.
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/files/"+acme+"/grants/"+viewer.ID, nil); r.Status != 204 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		hidden("acme/notes.txt")
		if status("GET", "/api/v1/shared", 200).JSON(t, &shared); len(shared.Items) != 0 {
			t.Errorf("shared with Ann after the revocation: %+v", shared.Items)
		}

		// A purged folder takes its grants with it.
		grant(acme, map[string]any{"user_id": bob.ID, "access": "viewer"}, 200)
		acmeTrash = env.Do(t, env.Token, "DELETE", file("acme"), nil).Map(t)["id"].(string)
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "DELETE", "/api/v1/trash/"+acmeTrash, nil); r.Status != 204 {
			t.Fatalf("purge acme: %d %s", r.Status, r.Body)
		}
		if left := sqldbtest.Strings(t, env.App.DB, "SELECT id FROM space_grants WHERE node_id <> ''"); len(left) != 0 {
			t.Errorf("grants left on purged folders: %v", left)
		}

		var page auditPage
		env.Do(t, env.Token, "GET", "/api/v1/audit?action=folder.*", nil).JSON(t, &page)
		counts := map[string]int{}
		for _, e := range page.Items {
			if e.Target.Type == "folder" && (e.Target.ID == acme || e.Target.ID == contracts) && e.Outcome == "success" {
				counts[e.Action]++
			}
		}
		if counts["folder.grant"] != 4 || counts["folder.revoke"] != 2 {
			t.Errorf("folder grants audited: %v", counts)
		}
	})
}
