package api_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/subject"
)

// importFile posts a contacts file as token.
func importFile(t *testing.T, env *apptest.Env, token, query, ctype, body string, accept string) apptest.Response {
	t.Helper()
	req, err := http.NewRequest("POST", env.Server.URL+"/api/v1/subjects/import"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ctype)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	return apptest.Response{Status: res.StatusCode, Header: res.Header, Body: b.Bytes()}
}

func countSubjects(t *testing.T, env *apptest.Env, token string) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		var page struct {
			Items      []any
			NextCursor string `json:"next_cursor"`
		}
		env.Do(t, token, "GET", "/api/v1/subjects?limit=500&cursor="+cursor, nil).JSON(t, &page)
		n += len(page.Items)
		if page.NextCursor == "" {
			return n
		}
		cursor = page.NextCursor
	}
}

// TestContactImportExport: a file with bad rows is refused whole, naming
// each bad row by line and column; a dry run imports nothing; a clean
// file imports, with progress when asked; existing contacts can be
// skipped; an export (CSV and JSON) imports back into another tenant.
func TestContactImportExport(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		createSubject(t, env, env.Token, map[string]any{"email": "known@example.org"})
		before := countSubjects(t, env, env.Token)

		bad := "email,phone,name,attributes.company,colour\n" +
			"ann@example.org,+33 1 23 45 67 89,Ann,Acme,\n" +
			"not-an-email,,Bo,,\n" +
			"ann@example.org,,Ann again,,\n" +
			"known@example.org,,Known,,\n" +
			"cy@example.org,,Cy\n"
		r := importFile(t, env, env.Token, "?dry_run=true", "text/csv", bad, "")
		var problem struct {
			Rows []errs.RowProblem `json:"errors"`
		}
		if r.JSON(t, &problem); r.Status != 400 {
			t.Fatalf("bad file: %d %s", r.Status, r.Body)
		}
		want := "1 colour|3 email|4 email|5 email|6 file"
		var got []string
		for _, p := range problem.Rows {
			got = append(got, fmt.Sprintf("%d %s", p.Line, p.Field))
			if strings.Contains(p.Reason, "example.org") {
				t.Errorf("a row problem quotes a value: %+v", p)
			}
		}
		if strings.Join(got, "|") != want {
			t.Errorf("problems %v; want %s", got, want)
		}
		if r := importFile(t, env, env.Token, "", "text/csv", bad, ""); r.Status != 400 {
			t.Errorf("the bad file for real: %d", r.Status)
		}
		// Broken CSV (it once panicked) and text that is not UTF-8: 400
		// naming the line, dry run or not, and nothing imported.
		for _, q := range []string{"?dry_run=true", ""} {
			for in, want := range map[string]string{
				"email,name\n\"unterminated,x\n": "2 file",
				"email,name\na\xff\xfe@b.c,A\n":  "2 email",
			} {
				r := importFile(t, env, env.Token, q, "text/csv", in, "")
				r.JSON(t, &problem)
				if r.Status != 400 || len(problem.Rows) != 1 || fmt.Sprintf("%d %s", problem.Rows[0].Line, problem.Rows[0].Field) != want {
					t.Errorf("import%s of %q: %d %s; want a problem at %s", q, in, r.Status, r.Body, want)
				}
			}
		}
		if n := countSubjects(t, env, env.Token); n != before {
			t.Fatalf("a refused file imported %d contacts", n-before)
		}

		var b strings.Builder
		b.WriteString("email,phone,source,name,attributes.company\n")
		for i := range 2500 {
			fmt.Fprintf(&b, "p%04d@example.org,+4477009%05d,fair 2026,Person %d,\"=HYPERLINK(\"\"x\"\")\"\n", i, i, i)
		}
		var res subject.ImportResult
		r = importFile(t, env, env.Token, "?dry_run=true", "text/csv", b.String(), "")
		if r.JSON(t, &res); r.Status != 200 || res.Created != 2500 || !res.DryRun {
			t.Fatalf("dry run: %d %s", r.Status, r.Body)
		}
		if n := countSubjects(t, env, env.Token); n != before {
			t.Fatalf("a dry run imported %d contacts", n-before)
		}
		r = importFile(t, env, env.Token, "", "text/csv", b.String(), "application/x-ndjson")
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("import: %d %s", r.Status, r.Body)
		}
		var progress []string
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		for sc.Scan() {
			progress = append(progress, sc.Text())
		}
		if len(progress) != 4 || progress[0] != `{"done":1000,"total":2500}` || progress[2] != `{"done":2500,"total":2500}` ||
			!strings.Contains(progress[3], `"created":2500`) {
			t.Fatalf("progress: %q", progress)
		}
		if n := countSubjects(t, env, env.Token); n != before+2500 {
			t.Fatalf("imported %d; want 2500", n-before)
		}
		var found struct{ Items []subject.Subject }
		env.Do(t, env.Token, "GET", "/api/v1/subjects?email=p0042%40example.org", nil).JSON(t, &found)
		if len(found.Items) != 1 || found.Items[0].Source != "fair 2026" || found.Items[0].Attributes["name"] != "Person 42" ||
			found.Items[0].Phone != "+447700900042" || found.Items[0].CreatedAt.IsZero() {
			t.Fatalf("imported contact: %+v", found.Items)
		}
		// The same file again, leaving existing contacts alone.
		r = importFile(t, env, env.Token, "?existing=skip", "text/csv", b.String(), "")
		if r.JSON(t, &res); r.Status != 201 || res.Skipped != 2500 || res.Created != 0 {
			t.Fatalf("re-import with skip: %d %s", r.Status, r.Body)
		}

		// Export, then import the export into another tenant.
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/export", nil); r.Status != 403 {
			t.Errorf("export with a token: %d (mass export needs a recently signed-in person)", r.Status)
		}
		exp := owner.Do(t, "GET", "/api/v1/subjects/export?format=csv", nil)
		if exp.Status != 200 || !strings.HasPrefix(exp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("export: %d %s", exp.Status, exp.Body)
		}
		recs, err := csv.NewReader(bytes.NewReader(exp.Body)).ReadAll()
		if err != nil || len(recs) != before+2500+1 {
			t.Fatalf("export: %d records, %v", len(recs), err)
		}
		if !strings.Contains(string(exp.Body), `'=HYPERLINK`) || !strings.Contains(string(exp.Body), `'+447700900042`) {
			t.Errorf("formula cells not neutralised in the export")
		}
		_, globexToken := env.AddTenant(t, "globex", "owner@globex.example")
		r = importFile(t, env, globexToken, "", "text/csv", string(exp.Body), "")
		if r.JSON(t, &res); r.Status != 201 || res.Created != before+2500 {
			t.Fatalf("import of the export: %d %s", r.Status, r.Body)
		}
		env.Do(t, globexToken, "GET", "/api/v1/subjects?email=p0042%40example.org", nil).JSON(t, &found)
		if len(found.Items) != 1 || found.Items[0].Phone != "+447700900042" || found.Items[0].Attributes["company"] != `=HYPERLINK("x")` {
			t.Fatalf("round trip: %+v", found.Items)
		}

		jexp := owner.Do(t, "GET", "/api/v1/subjects/export?format=json", nil)
		var doc struct{ Items []json.RawMessage }
		if jexp.JSON(t, &doc); jexp.Status != 200 || len(doc.Items) != before+2500 {
			t.Fatalf("JSON export: %d, %d items", jexp.Status, len(doc.Items))
		}
		_, initechToken := env.AddTenant(t, "initech", "owner@initech.example")
		r = importFile(t, env, initechToken, "", "application/json", string(jexp.Body), "")
		if r.JSON(t, &res); r.Status != 201 || res.Created != before+2500 {
			t.Fatalf("import of the JSON export: %d %.300s", r.Status, r.Body)
		}
		r = importFile(t, env, initechToken, "?dry_run=true", "application/json", `[{"email":"x@example.org"},{"email":"y@example.org","shoe_size":44},{"phone":"nope"}]`, "")
		if r.JSON(t, &problem); r.Status != 400 ||
			len(problem.Rows) != 2 || problem.Rows[0].Line != 2 || problem.Rows[0].Field != "shoe_size" || problem.Rows[1].Field != "phone" {
			t.Errorf("bad JSON items: %d %s", r.Status, r.Body)
		}
	})
}
