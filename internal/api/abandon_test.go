package api_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
)

// A request its client gave up on is not an internal error: no ERROR in
// the log, counted as abandoned (and as 499) in /metrics.
func TestAbandonedRequestIsNotAnError(t *testing.T) {
	env := apptest.New(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the server reads the database
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/v1/subjects", nil)
	req.Header.Set("Authorization", "Bearer "+env.Token)
	rec := httptest.NewRecorder()
	env.App.Handler().ServeHTTP(rec, req)
	if rec.Code != 499 {
		t.Errorf("abandoned request answered %d %s", rec.Code, rec.Body)
	}
	if errs := env.Logs.Errors(); errs != "" {
		t.Errorf("an abandoned request was logged as an error:\n%s", errs)
	}
	if !strings.Contains(env.Logs.String(), "request abandoned by the client") {
		t.Errorf("the abandonment was not logged")
	}
	m := string(env.Do(t, "", "GET", "/metrics", nil).Body)
	for _, want := range []string{
		`custodia_http_requests_abandoned_total{method="GET",route="/api/v1/subjects"} 1`,
		`custodia_http_requests_total{code="499",method="GET",route="/api/v1/subjects"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
