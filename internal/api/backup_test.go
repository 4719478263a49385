package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
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
			Kind, Location string
			At             time.Time
			Bytes          int64
		}
	}
	if r.JSON(t, &rep); r.Status != 200 || len(rep.Backups) != 1 || rep.Backups[0].Bytes == 0 || rep.Backups[0].At.IsZero() ||
		!strings.Contains(rep.Backups[0].Kind, "every tenant's rows") {
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
