package api_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/sqldb"
)

// A full database answers 507 with a problem that says so, writes
// nothing, and recovers once there is room. SQLite's max_page_count gives
// a real "database or disk is full".
func TestFullDatabaseAnswers507(t *testing.T) {
	env := apptest.New(t, "")
	ctx := context.Background()
	pragma := func(q string) {
		t.Helper()
		if err := env.App.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { _, err := tx.Exec(ctx, q); return err }); err != nil {
			t.Fatal(err)
		}
	}
	var pages int
	if err := env.App.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, "PRAGMA page_count").Scan(&pages)
	}); err != nil {
		t.Fatal(err)
	}
	pragma(fmt.Sprintf("PRAGMA max_page_count = %d", pages+2))
	var full apptest.Response
	for i := range 200 {
		r := env.Do(t, env.Token, "POST", "/api/v1/subjects", map[string]any{"email": fmt.Sprintf("p%d@example.org", i),
			"attributes": map[string]any{"note": strings.Repeat("x", 2000)}})
		if r.Status == 507 {
			full = r
			break
		}
		if r.Status != 201 {
			t.Fatalf("create %d: %d %s", i, r.Status, r.Body)
		}
	}
	if full.Status != 507 {
		t.Fatal("the database never filled up")
	}
	p := full.Map(t)
	if full.Header.Get("Content-Type") != "application/problem+json" || p["type"] != "https://custodia.dev/problems/insufficient-storage" ||
		!strings.Contains(fmt.Sprint(p["detail"]), "disk is full") {
		t.Errorf("full database: %d %s", full.Status, full.Body)
	}
	if errs := env.Logs.Errors(); errs != "" {
		t.Errorf("a full disk is the operator's to fix, not an internal error:\n%s", errs)
	}
	if !strings.Contains(env.Logs.String(), `"msg":"storage full"`) {
		t.Error("a full disk was not logged for the operator")
	}
	pragma("PRAGMA max_page_count = 1073741823")
	if r := env.Do(t, env.Token, "POST", "/api/v1/subjects", map[string]any{"email": "after@example.org"}); r.Status != 201 {
		t.Errorf("after room was made: %d %s", r.Status, r.Body)
	}
	if r := env.Do(t, env.Token, "GET", "/api/v1/audit/verify", nil); r.Map(t)["ok"] != true {
		t.Errorf("the audit chain after a full disk: %s", r.Body)
	}
}

// /metrics shows the free space of every local data location and /readyz
// fails when one is below the floor (free space through an injected
// function, as a real disk cannot be filled on demand everywhere).
func TestFreeSpaceFloor(t *testing.T) {
	var mu sync.Mutex
	free := map[string]int64{}
	env := apptest.NewWith(t, "", func(c *config.Config, o *app.Options) {
		c.MinFreeMB = 100
		o.FreeSpace = func(path string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			if n, ok := free[filepath.Base(path)]; ok {
				return n, nil
			}
			return 1 << 40, nil
		}
	})
	if r := env.Do(t, "", "GET", "/readyz", nil); r.Status != 200 {
		t.Fatalf("readyz with room: %d %s", r.Status, r.Body)
	}
	mu.Lock()
	free["local"] = 99 << 20 // the default region's folder
	mu.Unlock()
	r := env.Do(t, "", "GET", "/readyz", nil)
	if r.Status != 503 || !strings.Contains(string(r.Body), "only 99 MiB free for region local (the floor is 100 MiB)") {
		t.Errorf("readyz below the floor: %d %s", r.Status, r.Body)
	}
	m := string(env.Do(t, "", "GET", "/metrics", nil).Body)
	for _, want := range []string{
		`custodia_storage_free_bytes{location="region local"} 1.03809024e+08`,
		`custodia_storage_free_bytes{location="database"} 1.099511627776e+12`,
		`custodia_storage_free_bytes{location="anchor"}`,
		`custodia_storage_free_bytes{location="data dir"}`,
		`custodia_storage_free_floor_bytes 1.048576e+08`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s\n%s", want, grepLines(m, "custodia_storage"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A region on a real, small tmpfs (where this machine lets the test mount
// one): an upload that does not fit answers 507, leaves nothing behind,
// and the next one that fits is stored.
func TestFullRegionAnswers507(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestLocalDiskFull in blobstore covers the mapping through its seam", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	env := apptest.NewWith(t, "", func(c *config.Config, o *app.Options) {
		c.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")}, {Name: "small", URL: "file://" + mnt}}
	})
	r := env.Do(t, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "Small", "region": "small"})
	if r.Status != 201 {
		t.Fatalf("space: %d %s", r.Status, r.Body)
	}
	path := "/api/v1/spaces/" + r.Map(t)["id"].(string) + "/files/"
	r = env.DoRaw(t, env.Token, "PUT", path+"big.bin", "application/octet-stream", strings.Repeat("x", 3<<20))
	if r.Status != 507 || !strings.Contains(string(r.Body), "the storage region small is full") {
		t.Errorf("upload into a full region: %d %s", r.Status, r.Body)
	}
	if left := apptest.Files(t, mnt); len(left) != 0 {
		t.Errorf("a refused upload left %v", left)
	}
	if r := env.DoRaw(t, env.Token, "PUT", path+"small.bin", "application/octet-stream", "fits"); r.Status != 201 {
		t.Errorf("an upload that fits, after: %d %s", r.Status, r.Body)
	}
}
