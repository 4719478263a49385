package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkSubjects measures create and read through the whole handler
// stack (middleware, authentication, encryption, blind indexes, SQL and
// the audit event committed with each), sequentially and with 16
// concurrent clients.
func BenchmarkSubjects(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			url := ""
			if engine == "postgres" {
				url = sqldbtest.PostgresURL(b)
			}
			env := apptest.New(b, url)
			h := env.App.Handler()
			var seq atomic.Int64
			do := func(method, path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+env.Token)
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			create := func() string {
				n := seq.Add(1)
				rec := do("POST", "/api/v1/subjects", fmt.Sprintf(`{"email":"bench%d@example.org","phone":"+4420794%05d","attributes":{"plan":"pro","n":%d}}`, n, n%100000, n))
				if rec.Code != http.StatusCreated {
					b.Fatalf("create: %d %s", rec.Code, rec.Body)
				}
				return rec.Header().Get("Location")
			}
			b.Run("create", func(b *testing.B) {
				for b.Loop() {
					create()
				}
			})
			b.Run("create-16-clients", func(b *testing.B) {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						create()
					}
				})
			})
			loc := create()
			b.Run("read", func(b *testing.B) {
				for b.Loop() {
					if rec := do("GET", loc, ""); rec.Code != 200 {
						b.Fatalf("read: %d", rec.Code)
					}
				}
			})
			b.Run("read-16-clients", func(b *testing.B) {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if rec := do("GET", loc, ""); rec.Code != 200 {
							b.Errorf("read: %d", rec.Code)
							return
						}
					}
				})
			})
		})
	}
}
