package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app"
	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/config"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// cli runs the program in-process.
func cli(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cliIn(t, env, "", args...)
}

// cliIn runs the program in-process with stdin.
func cliIn(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestUserCreatePasswordStdin: the password comes from the first line of
// stdin, is checked against the tenant's policy (a refusal creates
// nothing), and signs in afterwards.
func TestUserCreatePasswordStdin(t *testing.T) {
	engines(t, func(t *testing.T, env map[string]string) {
		setup(t, env)
		args := []string{"user", "create", "--tenant", "acme", "--email", "pat@acme.example", "--role", "admin", "--password-stdin"}
		for _, c := range []struct{ stdin, msg string }{
			{"", "held no password"},
			{"short\n", "password: must be at least 15 characters"},
			{"passwordpassword\n", "password:"},
			{"acme ltd acme ltd acme\n", "password:"},
		} {
			if code, _, errOut := cliIn(t, env, c.stdin, args...); code != 1 || !strings.Contains(errOut, c.msg) {
				t.Errorf("stdin %q: exit %d, %q; want 1 and %q", c.stdin, code, errOut, c.msg)
			}
		}
		if code, out, errOut := cliIn(t, env, "a calm river at dawn 1899\r\nignored\n", args...); code != 0 || !strings.Contains(out, "(admin)") {
			t.Fatalf("user create: %d %s %s", code, out, errOut)
		}
		a := openApp(t, env)
		for pw, ok := range map[string]bool{"a calm river at dawn 1899": true, "a calm river at dawn 1899\r": false} {
			_, err := a.Identity.Login(context.Background(), identity.LoginInput{Tenant: "acme", Email: "pat@acme.example", Password: pw})
			if (err == nil) != ok {
				t.Errorf("sign in with %q: %v", pw, err)
			}
		}
	})
}

// TestTenantSetupLink: tenant create prints a one-time link with which the
// first owner chooses a password and is signed in; the link works once.
func TestTenantSetupLink(t *testing.T) {
	engines(t, func(t *testing.T, env map[string]string) {
		env["CUSTODIA_PUBLIC_URL"] = "https://custodia.example.org"
		code, out, errOut := cli(t, env, "tenant", "create", "--slug", "acme", "--name", "Acme Ltd", "--admin-email", "admin@acme.example")
		m := regexp.MustCompile(`https://custodia\.example\.org/login/acme/invitation#token=([A-Za-z0-9_-]{43})\n`).FindStringSubmatch(out)
		if code != 0 || m == nil || !strings.Contains(errOut, "owner only") {
			t.Fatalf("tenant create: %d %q %q; want a setup link", code, out, errOut)
		}
		a := openApp(t, env)
		ctx := context.Background()
		in := identity.LinkInput{Secret: m[1], Password: "the owner's own passphrase"}
		if res, err := a.Identity.AcceptInvitation(ctx, in); err != nil || res.Session == "" {
			t.Fatalf("accept the setup link: %+v %v", res, err)
		}
		if _, err := a.Identity.AcceptInvitation(ctx, in); err == nil {
			t.Error("the setup link worked twice")
		}
		if _, err := a.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: "admin@acme.example", Password: in.Password}); err != nil {
			t.Errorf("owner signs in with the chosen password: %v", err)
		}
	})
}

// Links printed by tenant create start with --public-url, else the URL
// a server of the database recorded when it started, else the default
// from --addr — with a warning saying so.
func TestSetupLinkUsesTheServersURL(t *testing.T) {
	env := map[string]string{"CUSTODIA_DATA_DIR": t.TempDir()}
	create := func(slug string, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cli(t, env, append([]string{"tenant", "create", "--slug", slug, "--name", "N", "--admin-email", "owner@" + slug + ".example"}, args...)...)
		if code != 0 {
			t.Fatalf("tenant create %s: %d %s %s", slug, code, out, errOut)
		}
		m := regexp.MustCompile(`(https://[^/\s]+)/login/[a-z0-9-]+/invitation#`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no link in %q", out)
		}
		return m[1], errOut
	}
	if base, errOut := create("first"); base != "https://localhost:8443" || !strings.Contains(errOut, "computed from --addr") {
		t.Errorf("before any server: link at %s, stderr %q; want the default and a warning", base, errOut)
	}
	served, stop := serveInProcess(t, env)
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	port := served[strings.LastIndex(served, ":")+1:]
	if base, errOut := create("second"); base != "https://localhost:"+port || strings.Contains(errOut, "computed from --addr") {
		t.Errorf("after the server ran on port %s: link at %s, stderr %q", port, base, errOut)
	}
	if base, _ := create("third", "--public-url", "https://custodia.example.org"); base != "https://custodia.example.org" {
		t.Errorf("with --public-url: link at %s", base)
	}
}

// openApp opens the app the CLI just worked on, in-process, until the
// test ends.
func openApp(t *testing.T, env map[string]string) *app.App {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func engines(t *testing.T, fn func(t *testing.T, env map[string]string)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, map[string]string{"CUSTODIA_DATA_DIR": t.TempDir()})
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, map[string]string{"CUSTODIA_DATA_DIR": t.TempDir(), "CUSTODIA_DATABASE_URL": sqldbtest.PostgresURL(t)})
	})
}

// setup creates tenant acme and returns a token.
func setup(t *testing.T, env map[string]string) string {
	t.Helper()
	code, out, errOut := cli(t, env, "tenant", "create", "--slug", "acme", "--name", "Acme Ltd", "--admin-email", "admin@acme.example")
	if code != 0 || !strings.Contains(out, "tenant acme created") {
		t.Fatalf("tenant create: %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, env, "token", "create", "--tenant", "acme", "--email", "admin@acme.example", "--name", "t", "--expires", "7d")
	token := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(token, "cust_") || !strings.Contains(errOut, "shown once") {
		t.Fatalf("token create: %d %q %s", code, out, errOut)
	}
	return token
}

func TestCLI(t *testing.T) {
	engines(t, func(t *testing.T, env map[string]string) {
		setup(t, env)
		// Refusals are clear and do not half-write.
		for _, c := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"tenant", "create", "--slug", "acme", "--name", "Again", "--admin-email", "x@acme.example"}, 1, "slug: a tenant with this slug already exists"},
			{[]string{"tenant", "create", "--slug", "Bad Slug", "--name", "X", "--admin-email", "x@x.example"}, 1, "slug:"},
			{[]string{"tenant", "create", "--slug", "beta", "--name", "B", "--admin-email", "x@x.example", "--region", "mars"}, 1, "region: unknown region"},
			{[]string{"token", "create", "--tenant", "nope", "--email", "a@b.example", "--name", "x"}, 1, `no tenant "nope"`},
			{[]string{"token", "create", "--tenant", "acme", "--email", "stranger@acme.example", "--name", "x"}, 1, "no user with this email or id"},
			{[]string{"token", "create", "--tenant", "acme", "--email", "admin@acme.example", "--name", "x", "--scopes", "root"}, 1, "unknown scope"},
			{[]string{"token", "create", "--tenant", "acme", "--email", "admin@acme.example", "--name", "x", "--expires", "soon"}, 1, "--expires"},
			{[]string{"tenant", "create", "--slug", "x"}, 2, "required flag(s) --admin-email, --name not set"},
			{[]string{"tenant", "quota", "--tenant", "acme", "--bytes", "many"}, 2, "invalid argument"},
			{[]string{"audit", "verify", "--tenant", "acme", "--bogus"}, 2, "unknown flag: --bogus"},
			{[]string{"audit", "verify", "--tenant", "acme", "extra"}, 2, "unknown command \"extra\""},
			{[]string{"migrate", "now"}, 2, "unknown command \"now\""},
			{[]string{"tenant", "quota", "--tenant", "acme", "--bytes", "-5"}, 1, "quota_bytes: 0 (no bound) or more"},
			{[]string{"frobnicate"}, 2, "unknown command"},
			{[]string{"tenant", "create", "--slug", "delta", "--name", "D", "--admin-email", "x@d.example", "--region", "eu", "--default-region", "local"}, 2, "disagree"},
			{[]string{"tenant", "create", "--slug", "delta", "--name", "D", "--admin-email", "x@d.example", "--region", "Bad=file:///x"}, 2, "lowercase name"},
		} {
			code, out, errOut := cli(t, env, c.args...)
			if code != c.code || !strings.Contains(errOut, c.msg) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, out, errOut, c.code, c.msg)
			}
		}
		// --region on tenant create is a region definition as everywhere
		// (NAME=URL); a bare name is still the default region.
		eu := "eu=file://" + filepath.Join(t.TempDir(), "eu")
		if code, out, errOut := cli(t, env, "tenant", "create", "--slug", "beta", "--name", "B", "--admin-email", "x@b.example",
			"--region", "local=file://"+filepath.Join(env["CUSTODIA_DATA_DIR"], "regions", "local"), "--region", eu, "--default-region", "eu"); code != 0 || !strings.Contains(out, "region: eu") {
			t.Errorf("tenant create with regions defined: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, env, "tenant", "create", "--slug", "gamma", "--name", "G", "--admin-email", "x@g.example", "--region", "local"); code != 0 || !strings.Contains(out, "region: local") {
			t.Errorf("tenant create --region NAME: %d %s %s", code, out, errOut)
		}
		if code, out, _ := cli(t, env, "user", "create", "--tenant", "acme", "--email", "member@acme.example"); code != 0 || !strings.Contains(out, "(member)") {
			t.Errorf("user create: %d %s", code, out)
		}
		if code, out, errOut := cli(t, env, "tenant", "quota", "--tenant", "acme", "--bytes", "1000000"); code != 0 || !strings.Contains(out, "storage quota 1000000 bytes") {
			t.Errorf("tenant quota: %d %s %s", code, out, errOut)
		}
		code, out, errOut := cli(t, env, "audit", "verify", "--tenant", "acme")
		if code != 0 || !strings.Contains(out, "audit chain intact") {
			t.Fatalf("audit verify: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, env, "audit", "account-writes", "--tenant", "acme"); code != 0 || !strings.Contains(out, "no account was changed or erased outside its own paths") {
			t.Errorf("audit account-writes: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, env, "keys", "rotate", "--tenant", "acme"); code != 0 || !strings.Contains(out, "key version 2 active, 2 subject keys re-wrapped") {
			t.Errorf("keys rotate: %d %s %s", code, out, errOut)
		}
		if code, out, _ := cli(t, env, "migrate"); code != 0 || !strings.Contains(out, "current") {
			t.Errorf("migrate: %d %s", code, out)
		}
		// Tamper with one event: verify exits non-zero and names it.
		db, err := sqldb.Open(context.Background(), env["CUSTODIA_DATABASE_URL"], env["CUSTODIA_DATA_DIR"])
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.WithTx(context.Background(), func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(context.Background(), "UPDATE audit_events SET outcome = 'failure' WHERE seq = 2")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = cli(t, env, "audit", "verify", "--tenant", "acme")
		if code != 1 || !strings.Contains(errOut, "BROKEN (chain) at event 2") {
			t.Errorf("verify after tampering: exit %d, %q %q", code, out, errOut)
		}
	})
}

// serveInProcess runs `custodia serve` on a free port and returns its base URL.
func serveInProcess(t *testing.T, env map[string]string) (string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, strings.NewReader(""), pw, io.Discard)
		pw.Close()
	}()
	url := waitForURL(t, pr)
	go io.Copy(io.Discard, pr)
	return url, func() int { cancel(); return <-done }
}

var listening = regexp.MustCompile(`listening on (https://\S+)`)

func waitForURL(t *testing.T, r io.Reader) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				return
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatal("server exited before listening")
		}
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return ""
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the self-signed certificate
	}}
}

func TestServeTLS(t *testing.T) {
	env := map[string]string{"CUSTODIA_DATA_DIR": t.TempDir()}
	token := setup(t, env)
	base, stop := serveInProcess(t, env)
	host := strings.TrimPrefix(base, "https://")

	// The files of the embedded default, with safe modes.
	for name, mode := range map[string]os.FileMode{"master.key": 0o600, "custodia.db": 0o600, "tls/key.pem": 0o600} {
		st, err := os.Stat(filepath.Join(env["CUSTODIA_DATA_DIR"], name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v; want %v", name, err, st.Mode().Perm(), mode)
		}
	}
	// TLS 1.0 and 1.1 are refused; so are CBC suites under TLS 1.2.
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("a TLS %x handshake succeeded", v)
		}
	}
	c, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		c.Close()
		t.Error("a TLS 1.2 CBC handshake succeeded")
	}
	c, err = tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 AEAD handshake: %v", err)
	}
	if cs := c.ConnectionState(); cs.Version != tls.VersionTLS12 || !strings.Contains(tls.CipherSuiteName(cs.CipherSuite), "GCM") && !strings.Contains(tls.CipherSuiteName(cs.CipherSuite), "CHACHA20") {
		t.Errorf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
	}
	c.Close()

	req, _ := http.NewRequest("GET", base+"/api/v1/subjects", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := insecureClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Strict-Transport-Security"), "max-age=") || res.TLS.Version != tls.VersionTLS13 {
		t.Errorf("GET over HTTPS: %d, HSTS %q, TLS %x", res.StatusCode, res.Header.Get("Strict-Transport-Security"), res.TLS.Version)
	}
	// Operator commands work on the same data while the server runs.
	code, out, errOut := cli(t, env, "tenant", "create", "--slug", "live", "--name", "Live", "--admin-email", "a@live.example")
	if code != 0 {
		t.Fatalf("tenant create while serving: %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, env, "token", "create", "--tenant", "live", "--email", "a@live.example", "--name", "t")
	if code != 0 {
		t.Fatalf("token create while serving: %d %s", code, errOut)
	}
	req, _ = http.NewRequest("POST", base+"/api/v1/subjects", strings.NewReader(`{"email":"x@live.example"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	req.Header.Set("Content-Type", "application/json")
	if res, err = insecureClient().Do(req); err != nil || res.StatusCode != 201 {
		t.Fatalf("new tenant's token on the running server: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
	if code, out, errOut := cli(t, env, "audit", "verify", "--tenant", "live"); code != 0 {
		t.Errorf("verify while serving: %d %s %s", code, out, errOut)
	}
	if code := stop(); code != 0 {
		t.Errorf("graceful shutdown exit code %d", code)
	}
	// The commands kept their audit anchor apart from the server's (now
	// written, at shutdown): an object each, so neither replaces the other.
	hostname, _ := os.Hostname()
	objects, _ := filepath.Glob(filepath.Join(env["CUSTODIA_DATA_DIR"], "anchor", "*.json"))
	for i, o := range objects {
		objects[i] = filepath.Base(o)
	}
	if !slices.Contains(objects, hostname+".json") || !slices.Contains(objects, hostname+"-cli.json") {
		t.Errorf("anchor objects %v; want the server's (%s.json) and the commands' (%s-cli.json)", objects, hostname, hostname)
	}
}

// TestCrashLosesNothing kills the server process (SIGKILL) the moment it
// answers 201 and checks, after a restart, that the subject and its audit
// event are there and the chain verifies.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "custodia")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	engines(t, func(t *testing.T, env map[string]string) {
		token := setup(t, env)
		start := func() (*exec.Cmd, string) {
			cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
			cmd.Env = os.Environ()
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			u := waitForURL(t, stdout)
			go io.Copy(io.Discard, stdout)
			return cmd, u
		}
		cmd, base := start()
		client := insecureClient()
		var ids []string
		for i := range 5 {
			body := fmt.Sprintf(`{"email":"crash%d@example.org","attributes":{"n":%d}}`, i, i)
			req, _ := http.NewRequest("POST", base+"/api/v1/subjects", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 201 {
				t.Fatalf("create: %d", res.StatusCode)
			}
			if i == 4 { // kill at once, before reading the body
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			var s struct{ ID string }
			_ = json.NewDecoder(res.Body).Decode(&s)
			res.Body.Close()
			ids = append(ids, s.ID)
		}
		_ = cmd.Wait()
		if ids[4] == "" {
			t.Fatal("no id read from the last 201")
		}
		_, base = start()
		for _, id := range ids {
			req, _ := http.NewRequest("GET", base+"/api/v1/audit?subject="+id+"&action=subject.create", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page struct{ Items []map[string]any }
			_ = json.NewDecoder(res.Body).Decode(&page)
			res.Body.Close()
			if len(page.Items) != 1 {
				t.Errorf("subject %s: %d subject.create events after the crash; want 1", id, len(page.Items))
			}
			req, _ = http.NewRequest("GET", base+"/api/v1/subjects/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("subject %s after the crash: %d", id, res.StatusCode)
			}
		}
		if code, out, errOut := cli(t, env, "audit", "verify", "--tenant", "acme"); code != 0 {
			t.Errorf("verify after crash: %d %s %s", code, out, errOut)
		}
	})
}

func TestFirstStartSaysWhatToDoNext(t *testing.T) {
	env := map[string]string{"CUSTODIA_DATA_DIR": t.TempDir()}
	startOnce := func() string {
		ctx, cancel := context.WithCancel(context.Background())
		var out apptest.LogBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, strings.NewReader(""), &out, io.Discard)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "Authorization: Bearer") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, out.String())
		}
		return out.String()
	}
	first := startOnce()
	for _, want := range []string{"listening on https://127.0.0.1:", "SQLite", "self-signed certificate", "A new master key was created",
		"backups:", "manifests signed by ed25519:", "WARNING:    backups are encrypted to an age identity kept beside the data",
		"WARNING:    backups are kept in the data directory",
		"Back it up", "custodia tenant create --slug", "the console is at https://localhost:", "custodia token create --tenant"} {
		if !strings.Contains(first, want) {
			t.Errorf("first start does not say %q:\n%s", want, first)
		}
	}
	if second := startOnce(); strings.Contains(second, "A new master key") {
		t.Errorf("second start claims a new master key:\n%s", second)
	}
}

// TestTestOptionsOnlyInTests: the test-only options (app.TestOptions) are
// not in the configuration, so no flag or variable reaches them; and code
// outside a test binary that asks for them anyway is refused. A program
// that asks (testdata/testonly) is built and run as the binary is.
func TestTestOptionsOnlyInTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "testonly")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/testonly").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{"sqldb NoSync: " + sqldb.ErrTestOnly.Error(), "password NewTestHasher: " + password.ErrTestOnly.Error()} {
		if !strings.Contains(string(out), want) {
			t.Errorf("outside a test binary, want %q; the program said:\n%s", want, out)
		}
	}
	// The configuration has no field for them: every field a flag or a
	// variable sets is in config.Config, and none of its names speaks of
	// syncing or hashing.
	ct := reflect.TypeFor[config.Config]()
	for i := range ct.NumField() {
		if name := strings.ToLower(ct.Field(i).Name); strings.Contains(name, "sync") || strings.Contains(name, "hash") || strings.Contains(name, "test") {
			t.Errorf("config.Config has a field %s: test-only settings belong in app.TestOptions only", ct.Field(i).Name)
		}
	}
}

// TestReadmeFirstSession runs the README's first session as written, top
// to bottom, with bash, curl and jq, against the server binary started
// as `make run` would (on a free port instead of 8443): every request
// must succeed (curl --fail-with-body), so the README cannot drift from
// the API.
func TestReadmeFirstSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: .ci/run installs it", tool)
			}
			t.Skipf("*** SKIPPED: the README session needs %s ***", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## A first session")
	_, block, _ := strings.Cut(after, "```\n")
	block, _, _ = strings.Cut(block, "```\n")
	if !strings.Contains(block, "audit verify") {
		t.Fatalf("no session found in the README:\n%s", block)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "custodia")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "CUSTODIA_DATA_DIR="+filepath.Join(dir, "data"))
	srv := exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
	srv.Env = env
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	base := waitForURL(t, stdout)
	go io.Copy(io.Discard, stdout)

	var script strings.Builder
	script.WriteString("set -euo pipefail\ncurl() { command curl --fail-with-body --show-error \"$@\"; }\n")
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "go build ") { // the test built it
			continue
		}
		script.WriteString(strings.ReplaceAll(line, "https://127.0.0.1:8443", base) + "\n")
	}
	cmd := exec.Command("bash", "-x", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(env, "CUSTODIA_ADDR="+strings.TrimPrefix(base, "https://"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's first session failed (%v); its last lines:\n%s", err, tail(string(out), 40))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// The backup commands, on SQLite and PostgreSQL: two runs listed newest
// first, the newest verified and drilled; restored on a "new machine" (an
// empty data dir or database), where the audit trail verifies and the old
// backups are listed; a damaged part makes verify and the drill exit 1
// naming it.
func TestBackupCommands(t *testing.T) {
	engines(t, func(t *testing.T, env map[string]string) {
		setup(t, env)
		for range 2 {
			if code, out, errOut := cli(t, env, "backup", "run"); code != 0 || !strings.Contains(out, "written to") || !strings.Contains(errOut, "warning") {
				t.Fatalf("backup run: %d %s %s", code, out, errOut)
			}
		}
		code, out, errOut := cli(t, env, "backup", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 || lines[0] < lines[1] {
			t.Fatalf("backup list: %d %q %s", code, out, errOut)
		}
		code, out, errOut = cli(t, env, "backup", "verify")
		if code != 0 || !strings.Contains(out, "every part matches") {
			t.Fatalf("backup verify: %d %s %s", code, out, errOut)
		}
		fingerprint := strings.TrimSpace(out[strings.Index(out, "ed25519:"):])
		id := strings.Fields(lines[0])[3]
		identity := filepath.Join(env["CUSTODIA_DATA_DIR"], "backup-identity.txt")
		if code, out, errOut := cli(t, env, "backup", "verify", "--identity", identity); code != 0 || !strings.Contains(out, "restore drill passed") || !strings.Contains(out, "1 tenants' audit chains") {
			t.Fatalf("a restore drill: %d %s %s", code, out, errOut)
		}

		// The newest restored on a "new machine": an empty data dir with the
		// master key, the backups where they were.
		old := env["CUSTODIA_DATA_DIR"]
		fresh := map[string]string{"CUSTODIA_DATA_DIR": t.TempDir(), "CUSTODIA_BACKUP_DIR": filepath.Join(old, "backups")}
		if env["CUSTODIA_DATABASE_URL"] != "" {
			fresh["CUSTODIA_DATABASE_URL"] = sqldbtest.EmptyPostgresURL(t)
		}
		key, _ := os.ReadFile(filepath.Join(old, "master.key"))
		os.WriteFile(filepath.Join(fresh["CUSTODIA_DATA_DIR"], "master.key"), key, 0o600)
		if code, out, errOut := cli(t, fresh, "backup", "list"); code != 0 || !strings.Contains(out, id+"  NOT TRUSTED: signed by "+fingerprint+", a key not trusted here") {
			t.Errorf("the backups, listed on a new machine: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, fresh, "backup", "list", "--fingerprint", fingerprint); code != 0 || !strings.Contains(out, id+"  signed by "+fingerprint+" (the fingerprint given)") {
			t.Errorf("the backups, listed with the fingerprint: %d %s %s", code, out, errOut)
		}
		if code, _, errOut := cli(t, fresh, "backup", "restore", id, "--identity", identity); code != 2 || !strings.Contains(errOut, "--fingerprint") {
			t.Errorf("restore without the fingerprint: %d %s", code, errOut)
		}
		// A ledger that does not verify stops the restore before it writes.
		ledgers, _ := filepath.Glob(filepath.Join(old, "backups", "ledger", "*.jsonl"))
		if len(ledgers) == 0 {
			t.Fatal("no ledger copied to the backup location")
		}
		good, _ := os.ReadFile(ledgers[0])
		os.WriteFile(ledgers[0], append(append([]byte{}, good...), []byte("{\"seq\":99}\n")...), 0o600)
		if code, _, errOut := cli(t, fresh, "backup", "restore", id, "--identity", identity, "--fingerprint", fingerprint); code != 1 ||
			!strings.Contains(errOut, "does not verify, so nothing was restored") {
			t.Errorf("a restore with a tampered ledger: %d %s", code, errOut)
		}
		if entries, _ := os.ReadDir(fresh["CUSTODIA_DATA_DIR"]); len(entries) > 1 { // master.key alone
			t.Errorf("a refused restore wrote into the data dir: %v", entries)
		}
		os.WriteFile(ledgers[0], good, 0o600)
		code, out, errOut = cli(t, fresh, "backup", "restore", id, "--identity", identity, "--fingerprint", fingerprint)
		if code != 0 || !strings.Contains(out, "database: 100%") || !strings.Contains(out, "sessions ended") || !strings.Contains(out, "tenant acme: audit trail restored to event") || !strings.Contains(out, "restored the backup of") {
			t.Fatalf("backup restore: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, fresh, "audit", "verify", "--tenant", "acme"); code != 0 || !strings.Contains(out, "restored from a backup") {
			t.Errorf("audit verify after the restore: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := cli(t, fresh, "backup", "list"); code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
			t.Errorf("the old backups, listed after the restore: %d %s %s", code, out, errOut)
		}
		if code, _, errOut := cli(t, fresh, "backup", "restore", id, "--identity", identity, "--fingerprint", fingerprint); code != 1 || !strings.Contains(errOut, "restored into an empty") {
			t.Errorf("a restore over a database: %d %s", code, errOut)
		}
		part := filepath.Join(env["CUSTODIA_DATA_DIR"], "backups", id, "database.age")
		b, err := os.ReadFile(part)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 1
		if err := os.WriteFile(part, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := cli(t, env, "backup", "verify", id); code != 1 || !strings.Contains(errOut, "database.age") {
			t.Errorf("verify of a damaged backup: %d %s", code, errOut)
		}
		if code, _, errOut := cli(t, env, "backup", "verify", "--identity", identity, id); code != 1 || !strings.Contains(errOut, "drill of backup "+id+" FAILED") {
			t.Errorf("a restore drill of a damaged backup: %d %s", code, errOut)
		}
	})
}
