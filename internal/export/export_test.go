package export_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/export"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

var update = flag.Bool("update", false, "rewrite testdata/export.golden")

// volatile are the parts of an export that differ between runs: ids,
// times, hashes, request ids of audit events. The golden file has
// placeholders there; everything else must match byte for byte.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<uuid>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`), "<time>"},
	{regexp.MustCompile(`[0-9a-f]{64}`), "<sha256>"},
	{regexp.MustCompile(`"bytes": \d+`), `"bytes": <n>`},
}

func normalise(b []byte) []byte {
	for _, v := range volatile {
		b = v.re.ReplaceAll(b, []byte(v.with))
	}
	return b
}

// seed makes a person with something in every part of an export.
func seed(t *testing.T, env *coretest.Env) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Core.Register.Create(ctx, env.Tenant.ID, register.New{NoticeText: "Monthly news by email.",
		Purpose: register.Purpose{Key: "news", Name: "Newsletter", Description: "Our monthly newsletter", LegalBasis: register.Consent,
			DataCategories: []string{"user.contact.email", "user.name"}, Recipients: []string{"Mailer Ltd"},
			Transfers: []register.Transfer{{Country: "US", Mechanism: "standard_contractual_clauses"}}, RetentionDays: 730}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Tenants.SetController(ctx, env.Tenant.ID, tenant.Controller{LegalName: "ACME Holdings Ltd",
		Address: "1 High Street\nLondon", Email: "privacy@acme.example", DPOName: "Dee Po", DPOEmail: "dpo@acme.example",
		PrivacyPolicyURL: "https://acme.example/privacy"}); err != nil {
		t.Fatal(err)
	}
	s, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org", Phone: "+33123456789",
		ExternalID: "crm-7", Source: "fair stand", Attributes: map[string]any{"name": "Ann Example", "company": "=Acme", "vip": true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Consent.Record(ctx, env.Tenant.ID, s.ID, consent.Input{Purpose: "news", Action: consent.Grant,
		Method: "web_form", Source: "footer form", IP: "198.51.100.7"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", SubjectID: s.ID, Channel: "email",
		Note: "Asked for a copy"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Core.Subjects.RecordBounce(ctx, env.Tenant.ID, s.ID, subject.BounceInput{Kind: subject.SoftBounce, Reason: "4.2.2"}); err != nil {
		t.Fatal(err)
	}
	// Files: one linked with two versions, a linked folder holding one,
	// and one of someone else's that must stay out.
	ctx, owner := env.AsToken(t)
	sp, err := env.Core.Spaces.Create(ctx, owner, "Clients", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, body string }{
		{"Ann/contract.txt", "Contract with Ann Example, draft\n"},
		{"Ann/contract.txt", "Contract with Ann Example, signed\n"},
		{"Ann/letters/2026-01.txt", "Dear Ann,\n"},
		{"Bo/contract.txt", "Contract with Bo\n"},
	} {
		if _, _, err := env.Core.Files.Put(ctx, owner, sp.ID, files.Upload{Path: f.path, Length: -1, Body: strings.NewReader(f.body),
			ContentType: "text/plain"}); err != nil {
			t.Fatalf("upload %s: %v", f.path, err)
		}
	}
	for _, path := range []string{"Ann/contract.txt", "Ann/letters"} {
		it, err := env.Core.Files.Stat(ctx, owner, sp.ID, path)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := env.Core.Files.Link(ctx, owner, it.ID, s.ID); err != nil {
			t.Fatalf("link %s: %v", path, err)
		}
	}
	return s.ID
}

// TestExportGolden: the access/portability zip of a seeded person has
// exactly the golden files, in order, identical on SQLite and PostgreSQL
// up to ids and times; the manifest's hashes are those of the files; and
// other tools (unzip, jq) read it.
func TestExportGolden(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		id := seed(t, env)
		zipped := zipOf(t, env, id)
		zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		var listing bytes.Buffer
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			files[f.Name] = b
			listing.WriteString("=== " + string(normalise([]byte(f.Name))) + "\n")
			listing.Write(normalise(b))
		}
		var man export.Manifest
		if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
			t.Fatal(err)
		}
		if len(man.Files) != len(files)-1 {
			t.Errorf("the manifest lists %d files; the zip has %d besides it", len(man.Files), len(files)-1)
		}
		for _, f := range man.Files {
			sum := sha256.Sum256(files[f.Name])
			if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(files[f.Name])) != f.Bytes {
				t.Errorf("manifest entry %s does not match the file", f.Name)
			}
		}
		golden := filepath.Join("testdata", "export.golden")
		if *update && env.Core.DB.Dialect() == sqldb.SQLite {
			if err := os.WriteFile(golden, listing.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/export/ -run TestExportGolden -update)", err)
		}
		if got := listing.String(); got != string(want) {
			t.Errorf("the export differs from %s:\n%s", golden, diff(string(want), got))
		}

		// Another program reads it.
		path := filepath.Join(t.TempDir(), "export.zip")
		if err := os.WriteFile(path, zipped, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tool := range []string{"unzip", "jq"} {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is missing; .ci/run installs it", tool)
				}
				t.Skipf("SKIPPED the second-tool check: %s is not installed", tool)
			}
		}
		if out, err := exec.Command("unzip", "-t", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
			t.Fatalf("unzip -t: %v\n%s", err, out)
		}
		if out, err := exec.Command("unzip", "-p", path, "files/*/v2/contract.txt").Output(); err != nil || string(out) != "Contract with Ann Example, signed\n" {
			t.Fatalf("unzip -p of the linked file's second version: %q %v", out, err)
		}
		cmd := exec.Command("jq", "-r", ".subject.email + \" \" + (.consents.history | length | tostring)")
		cmd.Stdin = bytes.NewReader(files["subject.json"])
		if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "ann@example.org 1" {
			t.Fatalf("jq on subject.json: %q %v", out, err)
		}
	})
}

// zipOf answers the access zip of subject id, asked for with the token.
func zipOf(t *testing.T, env *coretest.Env, id string) []byte {
	t.Helper()
	ctx, _ := env.AsToken(t)
	var buf bytes.Buffer
	if _, err := env.Core.Export.Export(ctx, env.Tenant.ID, id, &buf, nil); err != nil {
		t.Fatalf("export: %v", err)
	}
	return buf.Bytes()
}

// diff shows the first differing line.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, a, b)
		}
	}
	return "(same lines)"
}

// TestMembersDownloadTheirOwnData: a member's own zip holds their account
// too. (That a member reaches their own zip and nobody else's is the
// authorization matrix's: GET /api/v1/me/export, GET …/subjects/{id}/export.)
func TestMembersDownloadTheirOwnData(t *testing.T) {
	env := coretest.New(t, "")
	mia := env.AddUser(t, "mia@acme.example", "member", coretest.Password)
	seed(t, env)
	zipped := zipOf(t, env, mia.SubjectID)
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open("subject.json")
	if err != nil {
		t.Fatal(err)
	}
	var held export.Held
	if err := json.NewDecoder(f).Decode(&held); err != nil || held.Subject.Email != "mia@acme.example" || held.Account == nil || held.Account.Role != "member" {
		t.Fatalf("own export: %+v %v", held, err)
	}
}
