package api_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/blobstore/blobtest"
	"github.com/custodia/custodia/internal/config"
)

// Backups are reported: the residency report lists each kept one with its
// time and size, /metrics says when the newest was made, and /readyz warns
// once it is more than 36 hours old (and stays ready).
func TestBackupsAreReported(t *testing.T) {
	env := apptest.New(t, "")
	if _, err := env.App.Backups.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := env.Do(t, env.Token, "GET", "/api/v1/residency", nil)
	var rep struct {
		Backups []struct {
			Kind, Location, Region string
			At                     time.Time
			Bytes                  int64
		}
	}
	if r.JSON(t, &rep); r.Status != 200 || len(rep.Backups) != 1 || rep.Backups[0].Bytes == 0 || rep.Backups[0].At.IsZero() ||
		!strings.Contains(rep.Backups[0].Kind, "every organisation's rows") || rep.Backups[0].Region != "" {
		t.Fatalf("the residency report's backups: %d %s", r.Status, r.Body)
	}
	if m := env.Do(t, "", "GET", "/metrics", nil); !strings.Contains(string(m.Body), "custodia_backup_last_success_timestamp_seconds 1") ||
		!strings.Contains(string(m.Body), "custodia_backup_failures_total 0") {
		t.Errorf("metrics:\n%s", m.Body)
	}
	if r := env.Do(t, "", "GET", "/readyz", nil); r.Status != 200 || strings.Contains(string(r.Body), "warnings") {
		t.Errorf("readyz with a fresh backup: %d %s", r.Status, r.Body)
	}
	env.Now.Advance(37 * time.Hour)
	if r := env.Do(t, "", "GET", "/readyz", nil); r.Status != 200 || !strings.Contains(string(r.Body), "the newest backup is 37 hours old") {
		t.Errorf("readyz with a stale backup: %d %s", r.Status, r.Body)
	}
}

// The files of an S3 region are backed up in that region — the S3 server
// (versitygw) holds the copies under backup/ — a second backup with no
// new file copies none, and the residency report lists each region's
// copies with the database's.
func TestRegionBackupsOnS3(t *testing.T) {
	url := blobtest.StartS3(t)
	env := apptest.NewWith(t, "", func(c *config.Config, _ *app.Options) {
		c.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(c.DataDir, "regions", "local")}, {Name: "s3", URL: url}}
	})
	ctx := context.Background()
	sp := newSpace(t, env, map[string]any{"name": "Contracts", "region": "s3"})
	it := put(t, env, sp, "contract.pdf", content(300000, "the contract of ann"), 201)
	for i, want := range []int{1, 0} {
		m, err := env.App.Backups.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Files) != 1 || m.Files[0].Region != "s3" || m.Files[0].Objects != 1 || m.Files[0].Copied != want {
			t.Errorf("backup %d's content: %+v; want %d copied", i+1, m.Files, want)
		}
		env.Now.Advance(24 * time.Hour)
	}
	bucket, err := blobstore.Open(ctx, "s3", url)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	var copies []blobstore.Object
	if err := bucket.List(ctx, backup.Prefix, func(o blobstore.Object) error { copies = append(copies, o); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(copies) != 1 || !strings.HasPrefix(copies[0].Key, backup.Prefix+env.Tenant.ID+"/"+sp+"/") || copies[0].Size < 300000 {
		t.Errorf("the S3 region's copies: %+v (file %s)", copies, it.ID)
	}
	var rep struct {
		Backups []struct {
			Kind, Location, Region string
			Bytes                  int64
		}
	}
	env.Do(t, env.Token, "GET", "/api/v1/residency", nil).JSON(t, &rep)
	regions := 0
	for _, b := range rep.Backups {
		if b.Region == "s3" && strings.Contains(b.Location, "custodia-test") && b.Bytes == copies[0].Size {
			regions++
		}
	}
	if len(rep.Backups) != 4 || regions != 2 {
		t.Errorf("the residency report's backups: %+v", rep.Backups)
	}
}
