package app_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/custodia/custodia/"

var (
	platform = []string{"internal/errs", "internal/config", "internal/sqldb", "internal/keyring", "internal/audit", "internal/httpio", "internal/mail"}
	domain   = []string{"internal/tenant", "internal/identity", "internal/subject"}
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	return golist(t, "-deps", module+pkg)
}

func imports(t *testing.T, pkg string) []string {
	t.Helper()
	return golist(t, "-f", "{{join .Imports \" \"}}", module+pkg)
}

func golist(t *testing.T, args ...string) []string {
	t.Helper()
	pkg := args[len(args)-1]
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestDependencyDirection enforces doc.go: domain packages never import
// net/http or the HTTP layers; platform packages never import domain ones.
func TestDependencyDirection(t *testing.T) {
	for _, p := range domain {
		for _, d := range imports(t, p) {
			if d == "net/http" {
				t.Errorf("domain package %s imports net/http", p)
			}
		}
		for _, d := range deps(t, p) {
			if strings.HasPrefix(d, module+"internal/api") || strings.HasPrefix(d, module+"internal/app") ||
				strings.HasPrefix(d, module+"internal/httpio") || strings.HasPrefix(d, module+"internal/web") {
				t.Errorf("domain package %s depends on %s", p, d)
			}
		}
	}
	for _, p := range platform {
		for _, d := range deps(t, p) {
			for _, dp := range append(domain, "internal/api", "internal/app") {
				if d == module+dp {
					t.Errorf("platform package %s depends on %s", p, d)
				}
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
