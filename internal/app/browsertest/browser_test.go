package browsertest

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
)

// TestMain stops the package's one browser after the tests. The tests
// run on SQLite only: the console's behaviour on PostgreSQL is the API's,
// tested there.
func TestMain(m *testing.M) {
	code := m.Run()
	chrometest.CloseShared()
	os.Exit(code)
}

// screenshots is the git-ignored folder the page images go to.
var screenshots = filepath.Join("..", "..", "..", "screenshots")

// The privacy portal, as a person who wants to exercise a right finds it:
// the page loads with no console error, passes axe's WCAG 2.1 A and AA
// rules, and is shown at desk and phone widths.
func TestPrivacyPortalPage(t *testing.T) {
	env := apptest.New(t, "")
	p := chrometest.Shared(t, env.Server.Certificate()).NewPage(t)
	p.Do(t, chromedp.Navigate(env.Server.URL+"/privacy/acme"), chromedp.WaitVisible(chromedp.CSS("form")))
	title, err := chromedp.Run(p.Ctx, chromedp.Title())
	if err != nil || !strings.Contains(title, "ACME") {
		t.Errorf("title %q, %v; want the organisation's name", title, err)
	}
	for _, v := range p.Axe(t) {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("axe: %s", v)
		} else {
			t.Logf("axe (%s, not failed): %s", v.Impact, v)
		}
	}
	p.Screenshots(t, screenshots, "privacy-portal")
	if b, err := os.ReadFile(filepath.Join(screenshots, "privacy-portal-390.png")); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("the phone screenshot is not a PNG: %v", err)
	}
	if problems := p.ConsoleProblems(); len(problems) > 0 {
		t.Errorf("the console shows: %v", problems)
	}
}

// The harness catches what it is there to catch: a console error, an
// uncaught exception and an axe violation on a page made to have them.
func TestHarnessCatchesProblems(t *testing.T) {
	b := chrometest.Start(t)
	p := b.NewPage(t)
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
