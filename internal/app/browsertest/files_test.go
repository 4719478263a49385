package browsertest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/app/chrometest"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
)

// failNthPart makes the browser's network fail the nth part of every
// resumable upload the page sends (a PATCH to /api/v1/uploads/…) as if the
// connection were reset, and answers how many parts it has seen.
func failNthPart(t *testing.T, p *chrometest.Page, n int64) *atomic.Int64 {
	t.Helper()
	var seen atomic.Int64
	events := chromedp.Events(p.Ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(p.Ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "*/api/v1/uploads/*", RequestStage: fetch.RequestStageRequest}}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range events {
			if err != nil {
				if p.Ctx.Err() == nil { // not the end of the test
					t.Errorf("the interception stopped: %v", err)
				}
				return
			}
			if ev.Request.Method == "PATCH" && seen.Add(1) == n {
				_, _ = chromedp.Call(p.Ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonConnectionReset})
				continue
			}
			_, _ = chromedp.Call(p.Ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	return &seen
}

// A member of staff creates a space in a second region, uploads a 50 MiB
// file whose third part the network drops — the upload goes on from where
// it stopped and the file arrives whole — deletes it and restores it from
// the trash, gives a colleague access (a folder below inherits it), moves
// the file, restores an earlier version of another, moves the space back
// to the first region, and reads where the organisation's data is.
func TestStaffKeepFiles(t *testing.T) {
	eu := t.TempDir()
	c := newConsoleWith(t, func(cfg *config.Config, _ *app.Options) {
		cfg.Regions = []config.Region{{Name: "local", URL: "file://" + filepath.Join(cfg.DataDir, "regions", "local")},
			{Name: "eu", URL: "file://" + eu}}
	})
	max := c.AddUser(t, "max@acme.example", identity.RoleMember, apptest.Password)
	p := c.page(t, "/login")
	signIn(t, p, "owner@acme.example", apptest.Password)
	click(t, p, `nav a[href="/spaces"]`)
	want(t, p, "/spaces", "Files")
	p.Do(t, chromedp.SetValue(chromedp.CSS("#region"), "eu"))
	fill(t, p, "name", "Letters")
	want(t, p, p.Path(t), "Letters")
	if got := p.Text(t, "main"); !strings.Contains(got, "kept in eu") {
		t.Errorf("the space's region: %q", got)
	}
	spaceURL := p.Path(t)
	p.Inspect(t, screenshots, "folder")

	// 50 MiB, its third part dropped on the way. Text: DevTools carries a
	// paused request's body as a JSON string.
	random := make([]byte, 50<<20/4*3)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	content := []byte(base64.StdEncoding.EncodeToString(random))
	file := filepath.Join(t.TempDir(), "scan.bin")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	parts := failNthPart(t, p, 3)
	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{file}))
	p.Do(t, chromedp.Click(chromedp.CSS("form.upload button.primary")))
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(p.Text(t, "main"), "scan.bin") {
		if time.Now().After(deadline) {
			t.Fatalf("the upload did not finish: %q", p.Text(t, "[data-upload-status]"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Do(t, chromedp.WaitVisible(chromedp.CSS(`a[href*="scan.bin"]`)))
	if n := parts.Load(); n < 8 { // 7 parts of 8 MiB, and the one sent again
		t.Errorf("%d parts sent; want the 7 and the dropped one again", n)
	}
	click(t, p, `a[href*="scan.bin"]`)
	want(t, p, p.Path(t), "scan.bin")
	if got := p.Text(t, "tbody"); !strings.Contains(got, "52.4 MB") {
		t.Errorf("the versions: %q", got)
	}
	p.Inspect(t, screenshots, "file")
	href := chrometest.Eval[string](t, p, `document.querySelector("main a.button[download]").getAttribute("href")`)
	if got := download(t, p, "GET", href); !bytes.Equal(got, content) {
		t.Fatalf("the file downloaded differs from the one uploaded (%d bytes, want %d)", len(got), len(content))
	}

	// To the trash, and back.
	click(t, p, `form[action$="/delete"] button`)
	if got := p.Text(t, "main"); strings.Contains(got, "scan.bin") || !strings.Contains(got, "in the trash") {
		t.Errorf("after deleting: %q", got)
	}
	p.Open(t, c.URL+"/trash")
	want(t, p, "/trash", "Trash")
	p.Inspect(t, screenshots, "trash")
	click(t, p, `form[action$="/restore"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "The trash is empty") {
		t.Errorf("after restoring: %q", got)
	}
	p.Open(t, c.URL+spaceURL)
	if got := p.Text(t, "tbody"); !strings.Contains(got, "scan.bin") {
		t.Errorf("restored: %q", got)
	}

	// Max may read the space; a folder below inherits it.
	click(t, p, `a[href*="/grants"]`)
	want(t, p, p.Path(t), "Who has access")
	p.Do(t, chromedp.SetValue(chromedp.CSS("#who"), "user:"+max.ID))
	p.Next(t, chromedp.Click(chromedp.CSS("main form button.primary")))
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.Contains(got, "max@acme.example Can read Here") {
		t.Errorf("the space's access: %q", got)
	}
	p.Inspect(t, screenshots, "grants")
	p.Open(t, c.URL+spaceURL)
	p.Do(t, chromedp.SetValue(chromedp.CSS("#name"), "archive"))
	click(t, p, `form[action$="/folders"] button`)
	click(t, p, `a[href*="scan.bin"]`)
	p.Do(t, chromedp.SetValue(chromedp.CSS("#to"), "archive/scan.bin"))
	click(t, p, `form[action$="/move"] button`)
	want(t, p, p.Path(t), "scan.bin")
	if got := p.Text(t, "main"); !strings.Contains(got, "Letters/archive") {
		t.Errorf("after the move: %q", got)
	}
	p.Open(t, c.URL+spaceURL+"/grants?path=archive")
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.Contains(got, "max@acme.example Can read The whole space") {
		t.Errorf("the folder's access: %q", got)
	}

	// A second version, and the first restored.
	note := filepath.Join(t.TempDir(), "note.txt")
	for _, text := range []string{"first words", "second thoughts"} {
		if err := os.WriteFile(note, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p.Open(t, c.URL+spaceURL)
		p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{note}), chromedp.Click(chromedp.CSS("form.upload button.primary")))
		p.Do(t, chromedp.Poll[chromedp.Void](`document.querySelector("[data-upload-status]").textContent.startsWith("Uploaded")`,
			chromedp.WithPollingTimeout(20*time.Second)))
	}
	p.Open(t, c.URL+spaceURL+"/file?path=note.txt")
	click(t, p, `form[action$="/1/restore"] button`)
	if got := strings.Join(strings.Fields(p.Text(t, "tbody")), " "); !strings.HasPrefix(got, "3 (current)") {
		t.Errorf("after restoring version 1: %q", got)
	}
	if got := string(download(t, p, "GET", spaceURL+"/download?path=note.txt")); got != "first words" {
		t.Errorf("the current version: %q", got)
	}

	// The space moves back to the first region, its progress followed.
	p.Open(t, c.URL+spaceURL)
	p.Do(t, chromedp.SetValue(chromedp.CSS("#to-region"), "local"))
	click(t, p, `form[action$="/migration"] button`)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.Text(t, "main"), "Its files are kept in local"); p.Open(t, c.URL+spaceURL) {
		if time.Now().After(deadline) {
			t.Fatalf("the move did not finish: %q", p.Text(t, "main"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Without the script, the plain form uploads.
	if _, err := chromedp.Call(p.Ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain.txt")
	if err := os.WriteFile(plain, []byte("sent by a form"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Open(t, c.URL+spaceURL)
	p.Do(t, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{plain}))
	click(t, p, "form.upload button.primary")
	if got := p.Text(t, "main"); !strings.Contains(got, "The file is uploaded") || !strings.Contains(got, "plain.txt") {
		t.Errorf("a plain upload: %q", got)
	}
	if _, err := chromedp.Call(p.Ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false}); err != nil {
		t.Fatal(err)
	}

	// Deleted for good from the trash: it is gone, and so is its blob.
	blobs := len(apptest.Files(t, filepath.Join(c.DataDir, "regions", "local")))
	click(t, p, `a[href*="plain.txt"]`)
	click(t, p, `form[action$="/delete"] button`)
	p.Open(t, c.URL+"/trash")
	click(t, p, `form[action$="/purge"] button`)
	if got := p.Text(t, "main"); !strings.Contains(got, "deleted for good") || !strings.Contains(got, "The trash is empty") {
		t.Errorf("after deleting for good: %q", got)
	}
	if left := len(apptest.Files(t, filepath.Join(c.DataDir, "regions", "local"))); left != blobs-1 {
		t.Errorf("%d blobs in the region after the purge; want %d", left, blobs-1)
	}

	// Where the data is, the backups too, and the last restore drill.
	m, err := c.App.Backups.Run(opCtx())
	if err != nil {
		t.Fatal(err)
	}
	setup := c.App.Backups.Setup()
	b, err := os.ReadFile(setup.Identity)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := backup.RunDrill(opCtx(), setup.Dir, m.ID, setup.Trusted, ids, c.App.Keys, c.App.Regions, "", time.Now); err != nil || !d.OK {
		t.Fatalf("a restore drill: %+v %v", d, err)
	}
	p.Open(t, c.URL+"/spaces")
	click(t, p, `a[href="/residency"]`)
	want(t, p, "/residency", "Where your data is")
	if got := strings.Join(strings.Fields(p.Text(t, "main")), " "); !strings.Contains(got, "Letters local") || !strings.Contains(got, "Made every day, encrypted") ||
		!strings.Contains(got, "Last restore drill") || !strings.Contains(got, "Passed") || !strings.Contains(got, "file content: copies kept in their own region local") {
		t.Errorf("the residency report: %q", got)
	}
	p.Inspect(t, screenshots, "residency")
}
