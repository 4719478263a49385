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
	es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(context.Background(), env.Tenant.ID, audit.Filter{Action: action, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// withRegions runs fn on both engines with two regions: "local" under the
// data dir and "eu" in a directory of its own.
func withRegions(t *testing.T, fn func(t *testing.T, env *coretest.Env)) {
	eu := t.TempDir()
	coretest.RunWith(t, func(c *config.Config, _ *core.Options) {
		c.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")},
			{Name: "eu", URL: "file://" + filepath.Join(eu, filepath.Base(filepath.Dir(c.DataDir)))}}
	}, fn)
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
			if err := env.Core.DB.WithTx(ctx, func(tx *sqldb.Tx) error {
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
