package identity_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
)

func TestImportUsers(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		env.AddUser(t, "ad@acme.example", identity.RoleAdmin, pw)
		admin := principalOf(t, env, "ad@acme.example")
		count := func() int {
			page, err := ids.Users(ctx, env.Tenant.ID, identity.UserQuery{})
			if err != nil {
				t.Fatal(err)
			}
			return page.Total
		}
		before := count()

		bad := "Email,Name,Role,Shoe size\n" + // line 1: unknown column
			"ok@acme.example,Ok,member,\n" +
			"not-an-email,X,member,\n" + // 3
			"OK@acme.example,Twice,member,\n" + // 4: repeats line 2
			"ad@acme.example,Ad,member,\n" + // 5: has an account
			"boss@acme.example,Boss,owner,\n" + // 6: above the importer's role
			"odd@acme.example,Odd,wizard,\n" + // 7
			"short@acme.example\n" // 8: too few cells
		_, err := ids.ImportUsers(ctx, admin, strings.NewReader(bad), false)
		e, ok := errs.As(err)
		if !ok || e.Kind != errs.Invalid {
			t.Fatalf("bad file: %v", err)
		}
		var got []string
		for _, p := range e.Rows {
			got = append(got, strconv.Itoa(p.Line)+":"+p.Field)
			if strings.Contains(p.Reason, "@") {
				t.Errorf("a problem quotes a value: %+v", p)
			}
		}
		want := "1:shoe size 3:email 4:email 5:email 6:role 7:role 8:file"
		if strings.Join(got, " ") != want {
			t.Errorf("problems %v; want %s", got, want)
		}
		if n := count(); n != before {
			t.Fatalf("a bad file created %d accounts", n-before)
		}

		good := "email,name,role\nkim@acme.example,Kim Lee,admin\n\nlou@acme.example,\"=HYPERLINK(\"\"x\"\")\",\n"
		res, err := ids.ImportUsers(ctx, admin, strings.NewReader(good), true)
		if err != nil || !res.DryRun || res.Rows != 2 || res.Created != 2 || count() != before {
			t.Fatalf("dry run: %+v %v (accounts %d → %d)", res, err, before, count())
		}
		if res, err = ids.ImportUsers(ctx, admin, strings.NewReader(good), false); err != nil || res.Created != 2 {
			t.Fatalf("import: %+v %v", res, err)
		}
		kim, err := ids.UserByEmail(ctx, env.Tenant.ID, "kim@acme.example")
		if err != nil || kim.Status != identity.StatusInvited || kim.Role != identity.RoleAdmin {
			t.Fatalf("imported user %+v %v", kim, err)
		}
		env.LinkToken(t, "kim@acme.example", "invited")
		env.LinkToken(t, "lou@acme.example", "invited")

		// The export lists everyone, neutralises formulas, and is audited.
		var buf bytes.Buffer
		if err := ids.ExportUsers(ctx, admin, "csv", &buf); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != before+3 || strings.Join(recs[0], ",") != "id,email,name,role,status,created_at,last_login_at,second_factor" {
			t.Fatalf("export: %v", recs)
		}
		rows := map[string][]string{}
		for _, r := range recs[1:] {
			rows[r[1]] = r
		}
		if r := rows["lou@acme.example"]; r == nil || r[2] != `'=HYPERLINK("x")` || r[4] != "invited" {
			t.Errorf("lou in the export: %v", r)
		}
		if r := rows["kim@acme.example"]; r == nil || r[2] != "Kim Lee" || r[3] != "admin" {
			t.Errorf("kim in the export: %v", r)
		}
		buf.Reset()
		if err := ids.ExportUsers(ctx, admin, "json", &buf); err != nil {
			t.Fatal(err)
		}
		var doc struct{ Items []identity.UserRow }
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || len(doc.Items) != before+2 {
			t.Errorf("JSON export: %d items, %v", len(doc.Items), err)
		}
		if err := ids.ExportUsers(ctx, admin, "xml", &buf); !errs.Is(err, errs.Invalid) {
			t.Errorf("unknown format: %v", err)
		}
		if got := actions(t, env, ""); got["user.export"] != 2 {
			t.Errorf("audit: %v", got)
		}
	})
}

func TestRectifyProfile(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		owner := principalOf(t, env, "owner@acme.example")
		u := env.AddUser(t, "pat@acme.example", identity.RoleMember, pw)
		env.AddUser(t, "other@acme.example", identity.RoleMember, "")
		name, email := "Pat Smith", "pat.smith@acme.example"
		if _, err := ids.UpdateUser(ctx, owner, u.ID, identity.UserPatch{Name: &name, Email: &email}); err != nil {
			t.Fatal(err)
		}
		// The name changes at once; the address once confirmed (TestEmailChange).
		if _, err := ids.ConfirmEmail(ctx, emailLink(t, env, email, "Confirm your new sign-in address"), identity.Client{}); err != nil {
			t.Fatal(err)
		}
		a, err := ids.Account(ctx, env.Tenant.ID, u.ID)
		if err != nil || a.Name != name || a.Email != email {
			t.Fatalf("after rectification: %+v %v", a, err)
		}
		if _, err := login(env, email, pw, ""); err != nil {
			t.Errorf("sign in with the rectified email: %v", err)
		}
		taken, role := "other@acme.example", identity.RoleAdmin
		if _, err := ids.UpdateUser(ctx, owner, u.ID, identity.UserPatch{Email: &taken, Role: &role}); !errs.Is(err, errs.Invalid) {
			t.Errorf("someone else's email: %v", err)
		}
		if a, _ := ids.Account(ctx, env.Tenant.ID, u.ID); a.Role != identity.RoleMember {
			t.Errorf("a refused change still changed the role: %+v", a)
		}
		// The member edits their own name; clearing works.
		self := principalOf(t, env, email)
		if a, err := ids.UpdateProfile(ctx, self, "  "); err != nil || a.Name != "" {
			t.Errorf("clear own name: %+v %v", a, err)
		}
		long := strings.Repeat("n", 201)
		if _, err := ids.UpdateProfile(ctx, self, long); !errs.Is(err, errs.Invalid) {
			t.Errorf("overlong name: %v", err)
		}
		// The audit names the fields, never the values.
		rd := auditText(t, env)
		for _, fields := range []string{`["attributes"]`, `["email"]`} {
			if !strings.Contains(rd, `"action":"subject.rectify","target":{"type":"subject","id":"`+u.SubjectID+`"},"subject_id":"`+u.SubjectID+`","outcome":"success","details":{"fields":`+fields+`,"via":"account"}`) {
				t.Errorf("no audit of the rectification of %s", fields)
			}
		}
		if strings.Contains(rd, "Pat Smith") {
			t.Errorf("audit of the rectification: %s", rd)
		}
	})
}

// auditText is every event of the tenant, as JSON text.
func auditText(t *testing.T, env *coretest.Env) string {
	t.Helper()
	es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(context.Background(), env.Tenant.ID, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
