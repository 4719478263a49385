package api

import (
	"context"
	_ "embed"
	"net/http"
	"time"

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

// readyz answers 200 when the database answers and the schema is current.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.db.Ping(ctx); err != nil {
		return errs.Wrap(errs.Unavailable, err, "database unreachable")
	}
	if n, err := a.db.Pending(ctx); err != nil || n > 0 {
		return errs.E(errs.Unavailable, "database schema is not current; run custodia migrate")
	}
	httpio.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) error {
	a.metricsH.ServeHTTP(w, r)
	return nil
}
