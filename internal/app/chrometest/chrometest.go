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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/webauthn"
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

// shared is the one browser of a test package (Shared).
var shared struct {
	sync.Mutex
	b   *Browser
	err error
}

// Shared answers the test package's one browser, started by the first
// caller trusting the certificates it gives (by their public key); TestMain
// stops it with CloseShared. Tests keep apart by their pages' browser
// contexts. Without a browser the test is skipped loudly — and fails under
// CI, where .ci/run installs one.
func Shared(tb testing.TB, trusted ...*x509.Certificate) *Browser {
	tb.Helper()
	shared.Lock()
	if shared.b == nil && shared.err == nil {
		shared.b, shared.err = launch(trusted)
	}
	b, err := shared.b, shared.err
	shared.Unlock()
	need(tb, b, err)
	return b
}

// CloseShared stops the shared browser, if one started.
func CloseShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.b != nil {
		shared.b.cancel()
	}
}

// errNoBrowser marks a machine without Chromium.
type errNoBrowser struct{ error }

// need skips (outside CI) or fails the test when there is no browser.
func need(tb testing.TB, b *Browser, err error) {
	tb.Helper()
	var none errNoBrowser
	switch {
	case err == nil:
	case errors.As(err, &none) && os.Getenv("CI") != "true":
		tb.Skipf("*** SKIPPED: %v ***", err)
	case errors.As(err, &none):
		tb.Fatalf("a browser is required under CI: %v", err)
	default:
		tb.Fatal(err)
	}
}

// launch starts Chromium trusting the certificates given.
func launch(trusted []*x509.Certificate) (*Browser, error) {
	path, err := ExecPath()
	if err != nil {
		return nil, errNoBrowser{err}
	}
	dir, err := os.MkdirTemp("", "custodia-chromium-")
	if err != nil {
		return nil, err
	}
	var spki []string
	for _, c := range trusted {
		h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		spki = append(spki, base64.StdEncoding.EncodeToString(h[:]))
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(dir),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return &Browser{ctx: ctx, cancel: func() { cancel(); cancelAlloc(); os.RemoveAll(dir) }}, nil
}

// Page is one tab in a browser context of its own (one person: its own
// cookies and storage), whose console is watched.
type Page struct {
	Ctx context.Context

	mu       sync.Mutex
	problems []consoleProblem
	visited  map[string]bool // documents the page showed (Open, Next)
}

// NewPage opens a tab in a new browser context, closed when the test ends.
func (b *Browser) NewPage(tb testing.TB) *Page {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb.Cleanup(cancel)
	p := &Page{Ctx: ctx, visited: map[string]bool{}}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				p.mu.Lock()
				p.problems = append(p.problems, consoleProblem{text: string(m.Type) + ": " + m.Text, url: m.URL, network: m.Source == "network"})
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

// consoleProblem is one error the console showed.
type consoleProblem struct {
	text, url string
	network   bool // a failed load
}

// ConsoleProblems are the errors and uncaught exceptions the page's
// console has shown so far. The failed load of a page the test opened is
// none — a form answered 422, a page a role may not see 403 — but that of
// anything such a page loads is one.
func (p *Page) ConsoleProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.problems {
		if !c.network || !p.visited[c.url] {
			out = append(out, c.text)
		}
	}
	return out
}

// seen records the document the page shows now.
func (p *Page) seen(tb testing.TB) {
	href, err := chromedp.Run(p.Ctx, chromedp.Evaluate[string]("location.href.split('#')[0]"))
	if err != nil {
		tb.Fatalf("browser: %v", err)
	}
	p.mu.Lock()
	p.visited[href] = true
	p.mu.Unlock()
}

// Violation is one failed axe rule on a page.
type Violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Tags   []string `json:"tags"`
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

// WCAG tells a violation of a WCAG 2.0/2.1 A or AA rule from a
// best-practice finding.
func (v Violation) WCAG() bool {
	return slices.ContainsFunc(v.Tags, func(t string) bool { return slices.Contains(wcagTags, t) })
}

var wcagTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa"}

// Axe runs axe-core's WCAG 2.0/2.1 A and AA rules and its best practices
// on the page as it is now and answers the violations.
func (p *Page) Axe(tb testing.TB) []Violation {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](axeSource)); err != nil {
		tb.Fatalf("load axe: %v", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](
		`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}).then(r => r.violations)`,
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

// void makes an action with a value into one without, for Do.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error { _, err := a(ctx, t); return err })
}

// Open navigates to url and waits for its page to load.
func (p *Page) Open(tb testing.TB, url string) {
	tb.Helper()
	p.Do(tb, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body")))
	p.seen(tb)
}

// Next runs actions that leave the page — a click on a form's button, a
// key press — and waits until the next page has loaded.
func (p *Page) Next(tb testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	p.Do(tb, append([]chromedp.Action[chromedp.Void]{void(chromedp.Evaluate[any]("window.__custodiaLeft = true"))}, actions...)...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// While the page changes, evaluating may fail: ask again.
		ctx, cancel := context.WithTimeout(p.Ctx, 2*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.__custodiaLeft === undefined && document.readyState === 'complete'"))
		cancel()
		if err == nil && done {
			p.seen(tb)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the page did not change (last error: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Path answers the path (and query) of the page's URL.
func (p *Page) Path(tb testing.TB) string {
	tb.Helper()
	u, err := chromedp.Run(p.Ctx, chromedp.Evaluate[string]("location.pathname + location.search"))
	if err != nil {
		tb.Fatalf("browser: %v", err)
	}
	return u
}

// Text answers the text of the first element sel matches.
func (p *Page) Text(tb testing.TB, sel string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Eval answers a JavaScript expression's value on the page.
func Eval[T any](tb testing.TB, p *Page, expr string, opts ...chromedp.EvaluateOption) T {
	tb.Helper()
	v, err := chromedp.Run(p.Ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// VirtualAuthenticator gives the page's tab a platform authenticator that
// holds passkeys and says yes at once (Chromium's WebAuthn test domain).
func (p *Page) VirtualAuthenticator(tb testing.TB) {
	tb.Helper()
	p.Do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal,
				HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}})
		return err
	}))
}

// Visit navigates to url and answers the HTTP status of the document the
// browser ends on (after any redirect).
func (p *Page) Visit(tb testing.TB, url string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, chromedp.Navigate(url))
	if err != nil {
		tb.Fatalf("visit %s: %v", url, err)
	}
	p.seen(tb)
	return int(res.Status)
}

// Inspect runs axe on the page as it is now (CheckAxe) and writes its
// screenshots as name to dir.
func (p *Page) Inspect(tb testing.TB, dir, name string) {
	tb.Helper()
	p.CheckAxe(tb, name)
	p.Screenshots(tb, dir, name)
}

// CheckAxe runs axe on the page as it is now: a violation of a WCAG 2.1 A
// or AA rule fails the test, a best-practice finding is printed.
func (p *Page) CheckAxe(tb testing.TB, name string) {
	tb.Helper()
	for _, v := range p.Axe(tb) {
		if v.WCAG() {
			tb.Errorf("%s: axe: %s", name, v)
		} else {
			tb.Logf("%s: axe best practice (not failed): %s", name, v)
		}
	}
}

// ColorScheme makes the page's prefers-color-scheme "dark" or "light", as
// the system setting would.
func (p *Page) ColorScheme(tb testing.TB, scheme string) {
	tb.Helper()
	p.Do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	}))
}
