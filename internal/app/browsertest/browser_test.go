package browsertest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/chrometest"
)

// TestMain stops the package's one browser after the tests. The tests
// run on SQLite only: the console's behaviour on PostgreSQL is the API's,
// tested there.
// browser answers the package's one browser, which trusts the
// certificate every httptest TLS server presents (the same for all).
func browser(t *testing.T) *chrometest.Browser {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return chrometest.Shared(t, srv.Certificate())
}

func TestMain(m *testing.M) {
	code := m.Run()
	chrometest.CloseShared()
	os.Exit(code)
}

// screenshots is the git-ignored folder the page images go to.
var screenshots = filepath.Join("..", "..", "..", "screenshots")

// The harness catches what it is there to catch: a console error, an
// uncaught exception and an axe violation on a page made to have them.
func TestHarnessCatchesProblems(t *testing.T) {
	p := browser(t).NewPage(t)
	page := `<!doctype html><html lang="en"><title>bad</title><img src="data:,"><script>console.error("boom"); undefinedFn()</script>`
	p.Do(t, chromedp.Navigate("data:text/html,"+url.PathEscape(page)), chromedp.WaitReady(chromedp.CSS("img")))
	var ids []string
	for _, v := range p.Axe(t) {
		ids = append(ids, v.ID)
	}
	if !slices.Contains(ids, "image-alt") {
		t.Errorf("axe found %v; want image-alt", ids)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.ConsoleProblems()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := p.ConsoleProblems(); len(got) < 2 || !strings.Contains(strings.Join(got, "|"), "boom") {
		t.Errorf("console problems %q; want the error and the exception", got)
	}
}
