package files_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
)

// A resumable upload reserves its declared size under the quota when it
// opens, so parts on the disk never exceed the quota; completing,
// cancelling and expiring give the room back.
func TestUploadsReserveTheirSize(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		o := ownerOf(t, env)
		sp := o.space(t, "Quota", "")
		if _, err := env.Core.Tenants.SetQuota(context.Background(), env.Tenant.ID, 1000); err != nil {
			t.Fatal(err)
		}
		start := func(path string, size int64, want *errs.Kind) files.UploadSession {
			t.Helper()
			u, err := env.Core.Files.StartUpload(o.ctx, o.p, sp, files.NewUpload{Path: path, Size: &size})
			switch {
			case want == nil && err != nil:
				t.Fatalf("open %s of %d bytes: %v", path, size, err)
			case want != nil && !errs.Is(err, *want):
				t.Fatalf("open %s of %d bytes: %v; want %v", path, size, err, *want)
			}
			return u
		}
		tooLarge := errs.TooLarge

		a := start("a.bin", 600, nil)
		start("b.bin", 600, &tooLarge)                          // 600 reserved + 600 > 1000
		o.put(t, sp, "plain.bin", content(500, "x"), &tooLarge) // a plain upload sees the reservation too
		if _, err := env.Core.Files.AppendUpload(o.ctx, o.p, a.ID, 0, 300, bytes.NewReader(content(300, "a"))); err != nil {
			t.Fatal(err)
		}
		if err := env.Core.Files.CancelUpload(o.ctx, o.p, a.ID); err != nil {
			t.Fatal(err)
		}
		// Cancelled: its room is back.
		b := start("b.bin", 600, nil)
		// Completed: the file takes the room the session held, once.
		got, err := env.Core.Files.AppendUpload(o.ctx, o.p, b.ID, 0, 600, bytes.NewReader(content(600, "b")))
		if err != nil || got.Item == nil {
			t.Fatalf("complete b: %+v %v", got, err)
		}
		start("c.bin", 401, &tooLarge)
		start("c.bin", 400, nil)
		// Expired: released even before the job deletes it.
		env.Now.Advance(files.UploadTTL + 1)
		start("d.bin", 400, nil)
	})
}

// The hourly sweep also removes the temporary files of local writes a
// crash cut short (older than a write in progress can be).
func TestSweepRemovesStaleTempFiles(t *testing.T) {
	env := coretest.New(t, "")
	dir := filepath.Join(env.DataDir, "regions", "local", env.Tenant.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".tmp-12345")
	if err := os.WriteFile(tmp, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(tmp, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Files.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a crashed write's temporary file survived the sweep: %v", err)
	}
}
