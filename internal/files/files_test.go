package files_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/core"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/tenant"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// content is n bytes that say, over and over, something personal.
func content(n int, words string) []byte {
	return bytes.Repeat([]byte(words+" "), n/(len(words)+1)+1)[:n]
}

// owner is the tenant's owner acting with the env's token, as through
// the API.
type owner struct {
	ctx context.Context
	p   identity.Principal
	env *coretest.Env
}

func ownerOf(t *testing.T, env *coretest.Env) owner {
	t.Helper()
	ctx, p := env.AsToken(t)
	return owner{ctx: ctx, p: p, env: env}
}

func (o owner) space(t *testing.T, name, region string) string {
	t.Helper()
	sp, err := o.env.Core.Spaces.Create(o.ctx, o.p, name, region)
	if err != nil {
		t.Fatalf("create space %s: %v", name, err)
	}
	return sp.ID
}

// put stores body at path and fails the test unless that ends as want
// (nil for success).
func (o owner) put(t *testing.T, spaceID, path string, body []byte, want *errs.Kind) files.Item {
	t.Helper()
	it, _, err := o.env.Core.Files.Put(o.ctx, o.p, spaceID, files.Upload{Path: path, ContentType: "application/pdf",
		Length: int64(len(body)), Body: bytes.NewReader(body)})
	switch {
	case want == nil && err != nil:
		t.Fatalf("put %s: %v", path, err)
	case want != nil && !errs.Is(err, *want):
		t.Fatalf("put %s: %v; want %v", path, err, *want)
	}
	return it
}

// read answers the content of version n (0: the current one) of path, or
// the kind of error reading it met.
func (o owner) read(t *testing.T, spaceID, path string, n int) ([]byte, error) {
	t.Helper()
	c, err := o.env.Core.Files.Open(o.ctx, o.p, spaceID, path, n)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return io.ReadAll(c)
}

func (o owner) versions(t *testing.T, fileID string) []files.Version {
	t.Helper()
	vs, err := o.env.Core.Files.Versions(o.ctx, o.p, fileID)
	if err != nil {
		t.Fatalf("versions of %s: %v", fileID, err)
	}
	return vs
}

func (o owner) settings(t *testing.T, kept int) error {
	t.Helper()
	_, err := o.env.Core.Tenants.SetOrganisation(o.ctx, o.env.Tenant.ID, tenant.Organisation{TimeZone: "UTC", VersionsKept: &kept})
	return err
}

func count(t *testing.T, env *coretest.Env, query string, args ...any) string {
	t.Helper()
	return sqldbtest.Strings(t, env.Core.DB, query, args...)[0]
}

func audited(t *testing.T, env *coretest.Env, action string) []audit.Entry {
	t.Helper()
	var es []audit.Entry
	if err := audit.NewReader(env.Core.DB, env.Core.Keys).Each(context.Background(), env.Tenant.ID, audit.Filter{Action: action},
		func(e audit.Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return es
}

// withRegions runs fn on both engines with three regions: "local" under
// the data dir, "eu" in a directory of its own, and "down", an S3 region on
// a closed port.
func withRegions(t *testing.T, fn func(t *testing.T, env *coretest.Env)) {
	regions := coretest.ThreeRegions(t)
	coretest.RunWith(t, func(c *config.Config, _ *core.Options) { regions(c) }, fn)
}

// TestRegions: content goes to its space's region and nowhere else; a
// region that is down refuses (unavailable, naming it) and keeps nothing;
// the tenant narrows the regions; the residency report says where
// everything is.
func TestRegions(t *testing.T) {
	withRegions(t, func(t *testing.T, env *coretest.Env) {
		o := ownerOf(t, env)
		euDir := strings.TrimPrefix(env.Core.Config.Regions[1].URL, "file://")
		local := filepath.Join(env.DataDir, "regions", "local")
		inEU := o.space(t, "EU clients", "eu")
		inLocal := o.space(t, "Local", "")
		o.put(t, inEU, "a.txt", content(5000, "eu"), nil)
		o.put(t, inEU, "a.txt", content(6000, "eu"), nil)
		o.put(t, inLocal, "b.txt", content(7000, "local"), nil)
		if n, m := len(coretest.Files(t, euDir)), len(coretest.Files(t, local)); n != 2 || m != 1 {
			t.Fatalf("eu holds %d blobs (want 2), local %d (want 1)", n, m)
		}
		down := o.space(t, "Down", "down")
		_, _, err := env.Core.Files.Put(o.ctx, o.p, down, files.Upload{Path: "c.txt", Length: -1, Body: strings.NewReader("to nowhere")})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Unavailable || !strings.Contains(e.Detail, "down") {
			t.Errorf("upload to a region that is down: %v", err)
		}
		if got := count(t, env, "SELECT COUNT(*) FROM nodes WHERE space_id = ?", down); got != "0" {
			t.Errorf("%s items in the space whose region is down", got)
		}
		if got := count(t, env, "SELECT COUNT(*) FROM blob_intents WHERE state = 'writing'"); got != "0" {
			t.Errorf("%s writes still announced", got)
		}

		rep, err := env.Core.Files.Residency(o.ctx, o.p)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]files.RegionUse{}
		for _, u := range rep.Regions {
			byName[u.Name] = u
		}
		if byName["eu"].Spaces != 1 || byName["eu"].Objects != 2 || byName["local"].Objects != 1 || byName["down"].Spaces != 1 ||
			!strings.HasPrefix(byName["eu"].Location, "file://") || strings.Contains(byName["down"].Location, "secret") {
			t.Errorf("regions in the report: %+v", rep.Regions)
		}
		if rep.DefaultRegion != "local" || rep.UsedBytes != 5000+6000+7000 || rep.Database.Kind == "" || len(rep.Spaces) != 3 {
			t.Errorf("report: %+v", rep)
		}
		for _, s := range rep.Spaces {
			if s.ID == inEU && (s.Region != "eu" || s.Objects != 2 || s.Bytes <= 11000 || s.Name != "EU clients") {
				t.Errorf("EU space in the report: %+v", s)
			}
		}

		// The tenant narrows its regions: the default must be allowed.
		narrow := func(region string, allowed ...string) error {
			in := tenant.Organisation{TimeZone: "UTC", AllowedRegions: &allowed}
			if region != "" {
				in.Region = &region
			}
			_, err := env.Core.Tenants.SetOrganisation(o.ctx, env.Tenant.ID, in)
			return err
		}
		field := func(err error) string {
			if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
				return e.Field
			}
			return ""
		}
		if err := narrow("", "eu"); field(err) != "region" {
			t.Errorf("allowing only eu while the default is local: %v", err)
		}
		if err := narrow("", "mars"); field(err) != "allowed_regions" {
			t.Errorf("allowing an unknown region: %v", err)
		}
		if err := narrow("eu", "eu"); err != nil {
			t.Fatalf("narrowing to eu: %v", err)
		}
		if _, err := env.Core.Spaces.Create(o.ctx, o.p, "Elsewhere", "local"); field(err) != "region" {
			t.Errorf("space outside the allowed regions: %v", err)
		}
		if sp, err := env.Core.Spaces.Create(o.ctx, o.p, "Default", ""); err != nil || sp.Region != "eu" {
			t.Errorf("space in the default region: %+v %v", sp, err)
		}
	})
}

func kind(k errs.Kind) *errs.Kind { return &k }

// TestVersionsKept: a tenant that keeps the newest N versions of each
// file loses the older ones — rows, keys and blobs — when a version
// arrives (the room they free counts against the quota), and, after
// lowering N, by the hourly job; bad settings change nothing.
func TestVersionsKept(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		o := ownerOf(t, env)
		sp := o.space(t, "Drafts", "")
		region := filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID, sp)
		numbers := func(id string) []int {
			t.Helper()
			var out []int
			for _, v := range o.versions(t, id) {
				out = append(out, v.Version)
			}
			return out
		}
		for _, bad := range []int{-1, 10001} {
			if err := o.settings(t, bad); !errs.Is(err, errs.Invalid) {
				t.Errorf("versions_kept %d: %v; want invalid", bad, err)
			}
		}
		y := o.put(t, sp, "y.txt", content(1000, "y draft 1"), nil)
		o.put(t, sp, "y.txt", content(1000, "y draft 2"), nil)
		o.put(t, sp, "y.txt", content(1000, "y draft 3"), nil)

		if err := o.settings(t, 2); err != nil {
			t.Fatal(err)
		}
		x := o.put(t, sp, "x.txt", content(1000, "x draft 1"), nil)
		for i := 2; i <= 4; i++ {
			o.put(t, sp, "x.txt", content(1000, fmt.Sprintf("x draft %d", i)), nil)
		}
		if got := numbers(x.ID); fmt.Sprint(got) != "[4 3]" {
			t.Errorf("x keeps versions %v; want [4 3]", got)
		}
		if _, err := o.read(t, sp, "x.txt", 1); !errs.Is(err, errs.NotFound) {
			t.Errorf("a pruned version: %v", err)
		}
		if got := numbers(y.ID); len(got) != 3 {
			t.Errorf("y, untouched since the setting, keeps %v", got)
		}
		if n := len(coretest.Files(t, region)); n != 5 {
			t.Errorf("%d blobs; want 5 (x: 2, y: 3)", n)
		}

		// Lowered to one: the job prunes every file.
		if err := o.settings(t, 1); err != nil {
			t.Fatal(err)
		}
		if n, err := env.Core.Files.PruneVersions(context.Background()); err != nil || n != 3 {
			t.Errorf("prune: %d, %v; want 3", n, err)
		}
		if fmt.Sprint(numbers(x.ID), numbers(y.ID)) != "[4] [3]" {
			t.Errorf("after the job: x %v, y %v", numbers(x.ID), numbers(y.ID))
		}
		if n := len(coretest.Files(t, region)); n != 2 {
			t.Errorf("%d blobs after the job; want 2", n)
		}
		if b, err := o.read(t, sp, "y.txt", 0); err != nil || !bytes.Equal(b, content(1000, "y draft 3")) {
			t.Errorf("the current version after the job: %v", err)
		}
		if got := count(t, env, "SELECT COUNT(*) FROM blob_intents"); got != "0" {
			t.Errorf("%s announcements left", got)
		}

		// The version a new one pushes out frees its room under the quota.
		if _, err := env.Core.Tenants.SetQuota(context.Background(), env.Tenant.ID, 2500); err != nil {
			t.Fatal(err)
		}
		o.put(t, sp, "y.txt", content(1000, "y draft 4"), nil)
		o.put(t, sp, "z.txt", content(1000, "z"), kind(errs.TooLarge))

		if es := audited(t, env, "file.prune"); len(es) != 2 || es[0].Actor.Type != "system" {
			t.Errorf("the job's pruning is not audited per file as the system: %+v", es)
		}
	})
}

// TestMigrationReadBack: a copy that does not read back as the content
// the version recorded is never switched to — the version stays where it
// was, nothing of it is left in the new region, and the move stops; once
// the copy can be checked, the move resumes and ends.
func TestMigrationReadBack(t *testing.T) {
	withRegions(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		o := ownerOf(t, env)
		euDir := strings.TrimPrefix(env.Core.Config.Regions[1].URL, "file://")
		sp := o.space(t, "Checked", "")
		body := content(90_000, "checked on arrival")
		it := o.put(t, sp, "x.txt", body, nil)
		vid := o.versions(t, it.ID)[0].ID
		// The recorded SHA-256 no longer matches the content: a copy is
		// judged wrong on reading it back, as one a region mangled would be.
		var orig []byte
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT sha256_ct FROM file_versions WHERE id = ?", vid).Scan(&orig); err != nil {
			t.Fatal(err)
		}
		dk, err := env.Core.Keys.TenantDataKey(ctx, env.Core.DB.Read(), env.Tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		wrong := sha256.Sum256([]byte("something else"))
		setSum := func(v any) {
			t.Helper()
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE file_versions SET sha256_ct = ? WHERE id = ?", v, vid)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		setSum(dk.Seal("file_versions", "sha256_ct", vid, wrong[:]))
		if _, err := env.Core.Files.StartMigration(o.ctx, o.p, sp, "eu"); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		for deadline := time.Now().Add(15 * time.Second); !strings.Contains(env.Logs.String(), "space migration stopped"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the move did not stop")
			}
		}
		status := func() files.Migration {
			t.Helper()
			m, err := env.Core.Files.MigrationStatus(o.ctx, o.p, sp)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		if m := status(); m.Done || m.Moved != 0 || m.Region != "local" {
			t.Errorf("a copy that reads back wrong: %+v", m)
		}
		if left := coretest.Files(t, filepath.Join(euDir, env.Tenant.ID, sp)); len(left) != 0 {
			t.Errorf("the rejected copy is left in eu: %v", left)
		}
		if got := count(t, env, "SELECT region FROM file_versions WHERE id = ?", vid); got != "local" {
			t.Errorf("the version is in %s; want local", got)
		}
		setSum(orig)
		if err := env.Core.Files.ResumeMigrations(ctx); err != nil {
			t.Fatal(err)
		}
		if m := status(); !m.Done || m.Region != "eu" || m.Moved != 1 {
			t.Errorf("after resuming: %+v", m)
		}
		if b, err := o.read(t, sp, "x.txt", 0); err != nil || !bytes.Equal(b, body) {
			t.Errorf("the file after the move: %v", err)
		}
	})
}

// signedIn is email's session principal (password coretest.Password).
func signedIn(t *testing.T, env *coretest.Env, email string) identity.Principal {
	t.Helper()
	ctx := context.Background()
	res, err := env.Core.Identity.Login(ctx, identity.LoginInput{Tenant: env.Tenant.Slug, Email: email, Password: coretest.Password})
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Core.Identity.AuthenticateSession(ctx, res.Session)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTrash: deleted files, folders and spaces can be retrieved until
// purged — on demand or when the trash window ends — and purging deletes
// the blobs. (That a purge needs a person who signed in recently, never a
// token, is the route's: the authorization matrix.)
func TestTrash(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		o := ownerOf(t, env)
		fs := env.Core.Files
		sp := o.space(t, "Trash", "")
		region := filepath.Join(env.DataDir, "regions", "local")
		o.put(t, sp, "a/b.txt", []byte("inside a"), nil)
		c := o.put(t, sp, "c.txt", []byte("first c"), nil)
		item, err := fs.Trash(o.ctx, o.p, sp, "c.txt")
		if err != nil || item.ID != c.ID || item.Kind != "file" || item.Path != "c.txt" || item.Bytes != 7 ||
			!item.PurgeAt.Equal(item.TrashedAt.AddDate(0, 0, 30)) {
			t.Fatalf("trash c.txt: %+v %v", item, err)
		}
		if _, err := o.read(t, sp, "c.txt", 0); !errs.Is(err, errs.NotFound) {
			t.Errorf("a trashed file: %v", err)
		}
		o.put(t, sp, "c.txt", []byte("second c"), nil) // the name is free again
		restored, err := fs.Restore(o.ctx, o.p, c.ID)
		if err != nil || restored.Path != "c (restored).txt" {
			t.Fatalf("restore onto a taken name: %+v %v", restored, err)
		}
		if b, _ := o.read(t, sp, "c (restored).txt", 0); string(b) != "first c" {
			t.Errorf("restored file: %q", b)
		}

		// A folder goes with what it holds, and comes back with it.
		a, err := fs.Trash(o.ctx, o.p, sp, "a")
		if err != nil || a.Kind != "folder" || a.Bytes != 8 || a.Versions != 1 {
			t.Errorf("trashed folder: %+v %v", a, err)
		}
		if _, err := o.read(t, sp, "a/b.txt", 0); !errs.Is(err, errs.NotFound) {
			t.Errorf("a file in a trashed folder: %v", err)
		}
		if r, err := fs.Restore(o.ctx, o.p, a.ID); err != nil || r.Path != "a" {
			t.Fatalf("restore folder: %+v %v", r, err)
		}
		if b, _ := o.read(t, sp, "a/b.txt", 0); string(b) != "inside a" {
			t.Errorf("file after its folder came back: %q", b)
		}

		// An editor who neither made nor trashed an item does not see it.
		editor := env.AddUser(t, "editor@acme.example", "member", coretest.Password)
		if _, err := env.Core.Spaces.Grant(o.ctx, o.p, sp, space.GrantInput{UserID: editor.ID, Access: space.Editor}); err != nil {
			t.Fatal(err)
		}
		d := o.put(t, sp, "d.txt", []byte("doomed d"), nil)
		if _, err := fs.Trash(o.ctx, o.p, sp, "d.txt"); err != nil {
			t.Fatal(err)
		}
		ed := signedIn(t, env, "editor@acme.example")
		if items, err := fs.ListTrash(ctx, ed); err != nil || len(items) != 0 {
			t.Errorf("an editor sees someone else's trashed file: %+v %v", items, err)
		}
		if _, err := fs.Restore(ctx, ed, d.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("an editor restored someone else's trashed file: %v", err)
		}

		// Permanent deletion: the blob and the rows go.
		before := len(coretest.Files(t, region))
		owner := signedIn(t, env, "owner@acme.example")
		if err := fs.Purge(ctx, owner, d.ID); err != nil {
			t.Fatalf("purge: %v", err)
		}
		if after := len(coretest.Files(t, region)); after != before-1 {
			t.Errorf("purge left the blob: %d files before, %d after", before, after)
		}
		if got := count(t, env, "SELECT COUNT(*) FROM nodes WHERE id = ?", d.ID) + count(t, env, "SELECT COUNT(*) FROM file_versions WHERE node_id = ?", d.ID); got != "00" {
			t.Errorf("purge left rows: %s", got)
		}
		if _, err := fs.Restore(ctx, owner, d.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("restoring a purged file: %v", err)
		}

		// A whole space; then the purge job at the end of the window.
		if s, err := fs.TrashSpace(o.ctx, o.p, sp); err != nil || s.Kind != "space" || s.Versions != 3 {
			t.Fatalf("trash space: %+v %v", s, err)
		}
		if _, err := o.read(t, sp, "c.txt", 0); !errs.Is(err, errs.NotFound) {
			t.Errorf("a file of a trashed space: %v", err)
		}
		if list, err := env.Core.Spaces.List(o.ctx, o.p); err != nil || len(list) != 0 {
			t.Errorf("a trashed space is listed: %+v %v", list, err)
		}
		if _, err := fs.Restore(o.ctx, o.p, sp); err != nil {
			t.Fatalf("restore space: %v", err)
		}
		if b, _ := o.read(t, sp, "c.txt", 0); string(b) != "second c" {
			t.Errorf("a file of a restored space: %q", b)
		}
		if _, err := fs.TrashSpace(o.ctx, o.p, sp); err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(29 * 24 * time.Hour)
		if n, err := fs.PurgeDue(ctx); err != nil || n != 0 {
			t.Fatalf("purge after 29 days: %d %v", n, err)
		}
		env.Now.Advance(2 * 24 * time.Hour)
		if n, err := fs.PurgeDue(ctx); err != nil || n != 1 {
			t.Fatalf("purge after 31 days: %d %v", n, err)
		}
		if got := coretest.Files(t, region); len(got) != 0 {
			t.Errorf("blobs left after the space was purged: %v", got)
		}
		if got := count(t, env, "SELECT COUNT(*) FROM spaces WHERE id = ?", sp) + count(t, env, "SELECT COUNT(*) FROM nodes") + count(t, env, "SELECT COUNT(*) FROM blob_intents"); got != "000" {
			t.Errorf("rows left after the purge: %s", got)
		}
		seen := map[string]string{}
		for _, e := range audited(t, env, "*") {
			seen[e.Action] = e.Actor.Type
		}
		for _, a := range []string{"file.trash", "file.restore", "folder.trash", "folder.restore", "file.purge", "space.trash", "space.restore", "space.purge"} {
			if seen[a] == "" {
				t.Errorf("no %s in the audit trail", a)
			}
		}
		if seen["space.purge"] != "system" {
			t.Errorf("the purge job acted as %q", seen["space.purge"])
		}
	})
}
