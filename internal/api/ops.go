package api

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
)

//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI 3.1 document.
func OpenAPI() []byte { return openapiDoc }

func (a *API) openapi(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(openapiDoc)
	return err
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) error {
	httpio.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz answers 200 when the database answers, the schema is current and
// every local data location has at least the configured free space.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.db.Ping(ctx); err != nil {
		return errs.Wrap(errs.Unavailable, err, "database unreachable")
	}
	if n, err := a.db.Pending(ctx); err != nil || n > 0 {
		return errs.E(errs.Unavailable, "database schema is not current; run custodia migrate")
	}
	for _, l := range a.storage {
		free, err := a.freeSpace(l.Path)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "cannot tell the free space of "+l.Name)
		}
		if free < a.minFree {
			return errs.E(errs.Unavailable, "only %d MiB free for %s (the floor is %d MiB): free some space or add disk",
				free>>20, l.Name, a.minFree>>20)
		}
	}
	out := map[string]any{"status": "ready"}
	if a.backups != nil { // ready, with a warning: a stale backup is the operator's to see
		if at, made, err := a.backups.Newest(); err == nil && made && a.now().Sub(at) > StaleBackup {
			out["warnings"] = []string{fmt.Sprintf("the newest backup is %d hours old (%s)", int(a.now().Sub(at).Hours()), at.Format(time.RFC3339))}
		}
	}
	httpio.JSON(w, http.StatusOK, out)
	return nil
}

// StaleBackup is the age past which the newest backup is a warning.
const StaleBackup = 36 * time.Hour

// backupMetrics exposes when the newest backup was made and how many runs
// failed since the start.
func (a *API) backupMetrics(reg *prometheus.Registry) {
	if a.backups == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "custodia_backup_last_success_timestamp_seconds", Help: "When the newest kept backup was made (Unix time); 0 when there is none.",
	}, func() float64 {
		at, made, err := a.backups.Newest()
		if err != nil || !made {
			return 0
		}
		return float64(at.Unix())
	}), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "custodia_backup_failures_total", Help: "Backup runs that failed since the start.",
	}, func() float64 { return float64(a.backups.Failures()) }))
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) error {
	a.metricsH.ServeHTTP(w, r)
	return nil
}

// Location is a local folder Custodia writes to (the database's, the data
// dir, a file:// region, the anchor), watched for free space.
type Location struct {
	Name string // for people and metrics: "database", "region eu", …
	Path string
}

// FreeSpace answers the bytes an unprivileged process can still write
// under path.
func FreeSpace(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// storageMetrics exposes the free space of every location, read at each
// scrape, and the floor /readyz holds them to.
func (a *API) storageMetrics(reg *prometheus.Registry) {
	for _, l := range a.storage {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "custodia_storage_free_bytes", Help: "Free space for each local data location (the database's folder, the data dir, file:// regions, the anchor).",
			ConstLabels: prometheus.Labels{"location": l.Name},
		}, func() float64 {
			free, err := a.freeSpace(l.Path)
			if err != nil {
				return -1
			}
			return float64(free)
		}))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "custodia_storage_free_floor_bytes", Help: "Free space below which /readyz fails (CUSTODIA_MIN_FREE_MB).",
	}, func() float64 { return float64(a.minFree) }))
}
