package app_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/custodia/custodia/"

// layers classifies every package under internal/ (doc.go): a new package
// must be added here, so that its place in the one-way order is decided.
// Packages that help tests (…test) sit in the layer of what they help.
var layers = map[string]string{
	"internal/app": "wiring", "internal/app/apptest": "wiring", "internal/api": "http", "internal/web": "http",
	"internal/core": "core", "internal/core/coretest": "core",

	"internal/tenant": "domain", "internal/identity": "domain", "internal/identity/password": "domain",
	"internal/identity/passkeytest": "domain", "internal/subject": "domain", "internal/space": "domain",
	"internal/files": "domain", "internal/register": "domain", "internal/consent": "domain",
	"internal/retention": "domain", "internal/rights": "domain", "internal/export": "domain", "internal/backup": "domain",

	"internal/errs": "platform", "internal/config": "platform", "internal/sqldb": "platform",
	"internal/sqldb/sqldbtest": "platform", "internal/keyring": "platform", "internal/audit": "platform",
	"internal/httpio": "platform", "internal/mail": "platform", "internal/mail/mailtest": "platform",
	"internal/sms": "platform", "internal/sms/smstest": "platform", "internal/blobstore": "platform",
	"internal/blobstore/blobtest": "platform", "internal/segcrypt": "platform", "internal/csvfile": "platform",
	"internal/anchor": "platform", "internal/job": "platform", "internal/ledger": "platform",
	"internal/app/chrometest": "wiring", "internal/app/browsertest": "wiring",
}

// httpLayer are the packages a domain package may not depend on, not even
// through another package.
var httpLayer = []string{"internal/api", "internal/app", "internal/web", "internal/httpio"}

type listed struct {
	path    string   // relative to the module: internal/…
	imports []string // direct imports, relative where they are the module's
	deps    []string // every package it depends on, relative likewise
}

// golist lists the module's packages under internal/ (with -test, the test
// binaries of those with tests, keyed by the package they test).
func golist(t *testing.T, test bool) map[string]listed {
	t.Helper()
	args := []string{"list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}"}
	if test {
		args = append(args, "-test")
	}
	out, err := exec.Command("go", append(args, module+"internal/...")...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(list string) []string {
		var out []string
		for _, p := range strings.Split(list, ",") {
			if p != "" {
				out = append(out, strings.TrimPrefix(p, module))
			}
		}
		return out
	}
	pkgs := map[string]listed{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		path := strings.TrimPrefix(parts[0], module)
		if test {
			if !strings.HasSuffix(path, ".test") {
				continue
			}
			path = strings.TrimSuffix(path, ".test")
		}
		pkgs[path] = listed{path: path, imports: rel(parts[1]), deps: rel(parts[2])}
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func under(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// TestDependencyDirection enforces doc.go on every package under internal/:
// domain packages never import net/http nor depend on the HTTP layers;
// platform packages never depend on a domain package or above.
func TestDependencyDirection(t *testing.T) {
	pkgs := golist(t, false)
	var domain, above []string
	for p, layer := range layers {
		switch layer {
		case "domain":
			domain = append(domain, p)
		case "http", "wiring", "core":
			above = append(above, p)
		}
	}
	for p := range pkgs {
		if layers[p] == "" {
			t.Errorf("package %s is in no layer: add it to layers in this test (see doc.go)", p)
		}
	}
	for p := range layers {
		if _, ok := pkgs[p]; !ok {
			t.Errorf("layers names %s, which go list does not know", p)
		}
	}
	for p, pkg := range pkgs {
		switch layers[p] {
		case "domain":
			if slices.Contains(pkg.imports, "net/http") {
				t.Errorf("domain package %s imports net/http", p)
			}
			for _, d := range pkg.deps {
				if under(d, httpLayer) {
					t.Errorf("domain package %s depends on %s", p, d)
				}
			}
		case "core": // what domain tests build on
			for _, d := range pkg.deps {
				if under(d, httpLayer) {
					t.Errorf("core package %s depends on %s", p, d)
				}
			}
		case "platform":
			for _, d := range pkg.deps {
				if under(d, domain) || under(d, above) {
					t.Errorf("platform package %s depends on %s", p, d)
				}
			}
		}
	}
}

// TestDomainTestsStayOffHTTP: the tests of a domain (or platform) package
// build services on a database (coretest), not the whole app behind HTTP;
// what is about HTTP is tested in internal/api.
func TestDomainTestsStayOffHTTP(t *testing.T) {
	for p, pkg := range golist(t, true) {
		if layers[p] != "domain" && layers[p] != "platform" || under(p, httpLayer) { // httpio is the HTTP layer's own
			continue
		}
		for _, d := range pkg.deps {
			if under(d, httpLayer) {
				t.Errorf("the tests of %s depend on %s: test its services (coretest), not the app", p, d)
			}
		}
	}
}

// TestEveryPackageIsDocumented wants a package comment in every package.
func TestEveryPackageIsDocumented(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", module+"...").Output()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		n++
		if pkg, doc, _ := strings.Cut(line, "\t"); strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no doc comment", pkg)
		}
	}
	if n < 10 {
		t.Fatalf("go list found only %d packages", n)
	}
}
