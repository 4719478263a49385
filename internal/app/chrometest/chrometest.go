// Package chrometest drives a real headless Chromium for the browser
// tests (the packages named …/browsertest, run without -race): one
// browser process per test package, a separate browser context per
// person, a server certificate the browser trusts by its public key
// (WebAuthn refuses pages with certificate errors), the console watched
// for errors, axe-core's WCAG 2.1 A and AA rules run on a page, and
// screenshots at desk and phone widths.
package chrometest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

//go:embed axe/axe.min.js
var axeSource string

// Browser is one headless Chromium.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// ExecPath finds Chromium: $CUSTODIA_CHROMIUM, or chromium on the PATH.
func ExecPath() (string, error) {
	if p := os.Getenv("CUSTODIA_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium on the PATH (apt-get install chromium, or set CUSTODIA_CHROMIUM)")
}

// Start starts Chromium trusting the certificates given (by their public
// key) and stops it when the test ends. Without a browser the test is
// skipped loudly — and fails under CI, where .ci/run installs one.
func Start(tb testing.TB, trusted ...*x509.Certificate) *Browser {
	tb.Helper()
	path, err := ExecPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("a browser is required under CI: %v", err)
		}
		tb.Skipf("*** SKIPPED: %v ***", err)
	}
	var spki []string
	for _, c := range trusted {
		h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		spki = append(spki, base64.StdEncoding.EncodeToString(h[:]))
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(tb.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		tb.Fatalf("start %s: %v", path, err)
	}
	b := &Browser{ctx: ctx, cancel: func() { cancel(); cancelAlloc() }}
	tb.Cleanup(b.cancel)
	return b
}

// Page is one tab in a browser context of its own (one person: its own
// cookies and storage), whose console is watched.
type Page struct {
	Ctx context.Context

	mu       sync.Mutex
	problems []string
}

// NewPage opens a tab in a new browser context, closed when the test ends.
func (b *Browser) NewPage(tb testing.TB) *Page {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb.Cleanup(cancel)
	p := &Page{Ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				p.mu.Lock()
				p.problems = append(p.problems, string(m.Type)+": "+m.Text)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// Do runs actions on the page, failing the test on an error.
func (p *Page) Do(tb testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.Fatalf("browser: %v", err)
	}
}

// ConsoleProblems are the errors and uncaught exceptions the page's
// console has shown so far.
func (p *Page) ConsoleProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// Violation is one failed axe rule on a page.
type Violation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

func (v Violation) String() string {
	var at []string
	for _, n := range v.Nodes {
		at = append(at, fmt.Sprint(n.Target...))
	}
	return fmt.Sprintf("%s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(at, ", "))
}

// Axe runs axe-core's WCAG 2.0/2.1 A and AA rules on the page as it is now
// and answers the violations.
func (p *Page) Axe(tb testing.TB) []Violation {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](axeSource)); err != nil {
		tb.Fatalf("load axe: %v", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](
		`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => r.violations)`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("run axe: %v", err)
	}
	return vs
}

// Screenshots writes full-page screenshots of the page at 1280 and 390
// pixels wide to dir (name-1280.png, name-390.png).
func (p *Page) Screenshots(tb testing.TB, dir, name string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, width := range []int64{1280, 390} {
		ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
		png, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
			if _, err := chromedp.EmulateViewport(width, 900)(ctx, t); err != nil {
				return nil, err
			}
			return chromedp.FullScreenshot(100)(ctx, t) // 100: PNG (below, JPEG)
		})
		cancel()
		if err != nil {
			tb.Fatalf("screenshot at %d px: %v", width, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
