package subject_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"  Jane.Doe@Example.COM ", "jane.doe@example.com"},
		{"ｊａｎｅ@example.com", "jane@example.com"}, // NFKC folds full-width letters
	} {
		if got, err := subject.NormalizeEmail(c.in); err != nil || got != c.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "jane", "jane@", "@example.com", "Jane <jane@example.com>", "jane@localhost", strings.Repeat("a", 250) + "@example.com"} {
		if _, err := subject.NormalizeEmail(bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("NormalizeEmail(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"+44 20 7946 0958": "+442079460958", "+1 (555) 010-9999": "+15550109999"} {
		if got, err := subject.NormalizePhone(in); err != nil || got != want {
			t.Errorf("NormalizePhone(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"020 7946 0958", "+0123456789", "+12", "+44 abc", "+1234567890123456"} {
		if _, err := subject.NormalizePhone(bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("NormalizePhone(%q) accepted", bad)
		}
	}
}

func TestCreateReadFindRectify(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		s := env.Core.Subjects
		tid := env.Tenant.ID
		created, err := s.Create(ctx, tid, subject.New{Email: "Ann@Example.org", Phone: "+44 20 7946 0001", ExternalID: "crm-1",
			Attributes: map[string]any{"city": "Leeds", "tier": "gold"}, Source: "web form"})
		if err != nil {
			t.Fatal(err)
		}
		if created.Email != "ann@example.org" || created.Phone != "+442079460001" || created.Source != "web form" || created.Status != "active" {
			t.Fatalf("created = %+v", created)
		}
		got, err := s.Get(ctx, tid, created.ID)
		if err != nil || got.Email != created.Email || got.Attributes["city"] != "Leeds" || !got.CreatedAt.Equal(created.CreatedAt) {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		for _, l := range []subject.Lookup{{Email: "ANN@example.org"}, {Phone: "+44 (20) 7946-0001"}, {ExternalID: "crm-1"}} {
			found, err := s.Find(ctx, tid, l)
			if err != nil || len(found) != 1 || found[0].ID != created.ID {
				t.Errorf("Find(%+v) = %v, %v", l, found, err)
			}
		}
		if found, err := s.Find(ctx, tid, subject.Lookup{Email: "nobody@example.org"}); err != nil || len(found) != 0 {
			t.Errorf("Find(unknown) = %v, %v", found, err)
		}
		// Unique email and external id, conflict names the field.
		_, err = s.Create(ctx, tid, subject.New{Email: "ann@EXAMPLE.org"})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Conflict || e.Field != "email" {
			t.Errorf("duplicate email: %v", err)
		}
		_, err = s.Create(ctx, tid, subject.New{Email: "someone.else@example.org", ExternalID: "crm-1"})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Conflict || e.Field != "external_id" {
			t.Errorf("duplicate external id: %v", err)
		}
		// A refused create leaves no key behind.
		keys := sqldbtest.Int(t, env.Core.DB, "SELECT count(*) FROM subject_keys WHERE tenant_id = ?", tid)
		if subjects := sqldbtest.Int(t, env.Core.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ?", tid); keys != subjects {
			t.Errorf("after refused creates: %d subject keys for %d subjects", keys, subjects)
		}
		// Rectify: replace, clear, merge attributes.
		var p subject.Patch
		p.Email = subject.Optional[string]{Set: true, Value: "ann.new@example.org"}
		p.Phone = subject.Optional[string]{Set: true, Null: true}
		p.Attributes = subject.Optional[map[string]any]{Set: true, Value: map[string]any{"tier": nil, "lang": "en"}}
		upd, err := s.Rectify(ctx, tid, created.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"city": "Leeds", "lang": "en"}
		if upd.Email != "ann.new@example.org" || upd.Phone != "" || fmt.Sprint(upd.Attributes) != fmt.Sprint(want) || upd.ExternalID != "crm-1" {
			t.Fatalf("rectified = %+v", upd)
		}
		if found, _ := s.Find(ctx, tid, subject.Lookup{Email: "ann@example.org"}); len(found) != 0 {
			t.Error("old email still finds the subject")
		}
		if found, _ := s.Find(ctx, tid, subject.Lookup{Email: "ann.new@example.org"}); len(found) != 1 {
			t.Error("new email does not find the subject")
		}
		// Clearing the last identifier is refused and changes nothing.
		var clearAll subject.Patch
		clearAll.Email = subject.Optional[string]{Set: true, Null: true}
		clearAll.ExternalID = subject.Optional[string]{Set: true, Null: true}
		if _, err := s.Rectify(ctx, tid, created.ID, clearAll); !errs.Is(err, errs.Invalid) {
			t.Errorf("clearing every identifier: %v", err)
		}
		if again, _ := s.Get(ctx, tid, created.ID); again.Email != "ann.new@example.org" {
			t.Error("a refused rectification changed the subject")
		}
		// Audit names fields, never values.
		var details string
		if err := env.Core.DB.Read().QueryRow(ctx, "SELECT details FROM audit_events WHERE tenant_id = ? AND action = 'subject.rectify'", tid).Scan(&details); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(details, `"email"`) || strings.Contains(details, "ann") || strings.Contains(details, "en\"") {
			t.Errorf("rectify audit details = %s", details)
		}
	})
}

func TestOtherTenantSeesNothing(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		s := env.Core.Subjects
		mine, err := s.Create(ctx, env.Tenant.ID, subject.New{Email: "shared@example.org", ExternalID: "x-1"})
		if err != nil {
			t.Fatal(err)
		}
		other, _ := env.AddTenant(t, "globex", "owner@globex.example")
		if _, err := s.Get(ctx, other.ID, mine.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("Get from other tenant: %v", err)
		}
		var p subject.Patch
		p.Source = subject.Optional[string]{Set: true, Value: "x"}
		if _, err := s.Rectify(ctx, other.ID, mine.ID, p); !errs.Is(err, errs.NotFound) {
			t.Errorf("Rectify from other tenant: %v", err)
		}
		if found, err := s.Find(ctx, other.ID, subject.Lookup{Email: "shared@example.org"}); err != nil || len(found) != 0 {
			t.Errorf("Find from other tenant = %v, %v", found, err)
		}
		if _, err := s.Create(ctx, other.ID, subject.New{Email: "theirs@globex.example"}); err != nil {
			t.Fatal(err)
		}
		if list, _, err := s.List(ctx, other.ID, subject.ListOptions{Limit: 100}); err != nil || len(list) != 1 || list[0].Email != "theirs@globex.example" {
			t.Errorf("List of other tenant = %+v, %v; want only its own contact", list, err)
		}
		// The same email may exist in both tenants: indexes are per tenant.
		if _, err := s.Create(ctx, other.ID, subject.New{Email: "shared@example.org", ExternalID: "x-1"}); err != nil {
			t.Errorf("same email in another tenant: %v", err)
		}
	})
}

func TestMovedCiphertextDoesNotDecrypt(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		s, db, tid := env.Core.Subjects, env.Core.DB, env.Tenant.ID
		a, err := s.Create(ctx, tid, subject.New{Email: "a@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Create(ctx, tid, subject.New{Email: "b@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		other, _ := env.AddTenant(t, "globex", "owner@globex.example")
		c, err := s.Create(ctx, other.ID, subject.New{Email: "c@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		move := func(fromTenant, fromID, toTenant, toID string) {
			t.Helper()
			var ct []byte
			if err := db.Read().QueryRow(ctx, "SELECT email_ct FROM subjects WHERE tenant_id = ? AND id = ?", fromTenant, fromID).Scan(&ct); err != nil {
				t.Fatal(err)
			}
			if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE subjects SET email_ct = ? WHERE tenant_id = ? AND id = ?", ct, toTenant, toID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		move(tid, a.ID, tid, b.ID) // row to row
		if got, err := s.Get(ctx, tid, b.ID); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("row-moved ciphertext: %+v, %v; want ErrDecrypt", got, err)
		}
		move(tid, a.ID, other.ID, c.ID) // tenant to tenant
		if got, err := s.Get(ctx, other.ID, c.ID); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("tenant-moved ciphertext: %+v, %v; want ErrDecrypt", got, err)
		}
		if got, err := s.Get(ctx, tid, a.ID); err != nil || got.Email != "a@example.org" {
			t.Errorf("the original still reads: %+v, %v", got, err)
		}
	})
}

// TestAccountsChangeOnlyThroughTheirPaths: a subject who has a user account
// is neither rectified nor erased as a contact — the refusal names the
// account's route — nor listed, audienced or exported as one, while the
// account paths (RectifyAccount, an erasure for accounts) still reach them.
func TestAccountsChangeOnlyThroughTheirPaths(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		subjects := env.Core.Subjects
		u := env.AddUser(t, "mo@acme.example", "member", coretest.Password)
		attack := subject.Patch{Email: subject.Optional[string]{Set: true, Value: "attacker@evil.example"}}
		_, err := subjects.Rectify(ctx, env.Tenant.ID, u.SubjectID, attack)
		if e, ok := errs.As(err); !ok || e.Kind != errs.Conflict || !strings.Contains(e.Detail, "/api/v1/users/"+u.ID) {
			t.Errorf("rectifying an account as a contact: %v", err)
		}
		_, err = subjects.Erase(ctx, env.Tenant.ID, u.SubjectID, subject.EraseInput{Reason: "api"})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Conflict || !strings.Contains(e.Detail, "/api/v1/users/"+u.ID+"/erase") {
			t.Errorf("erasing an account as a contact: %v", err)
		}
		if s, err := subjects.Get(ctx, env.Tenant.ID, u.SubjectID); err != nil || s.Email != "mo@acme.example" {
			t.Fatalf("the account's person after refused writes: %+v %v", s, err)
		}
		if _, err := env.Core.Identity.UserByID(ctx, env.Tenant.ID, u.ID); err != nil {
			t.Fatalf("the account after a refused erasure: %v", err)
		}
		if s, err := subjects.RectifyAccount(ctx, env.Tenant.ID, u.SubjectID, subject.Patch{
			Email: subject.Optional[string]{Set: true, Value: "mo@new.acme.example"}}); err != nil || s.Email != "mo@new.acme.example" {
			t.Errorf("the account path: %+v %v", s, err)
		}
		contact, err := subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		// Staff are not contacts: no contact list, audience or export has them.
		if list, _, err := subjects.List(ctx, env.Tenant.ID, subject.ListOptions{}); err != nil || len(list) != 1 || list[0].ID != contact.ID {
			t.Errorf("the contact list: %+v %v; want ann alone", list, err)
		}
		if ids, err := subjects.IDs(ctx, env.Tenant.ID, subject.Where{}, "", 100); err != nil || len(ids) != 1 || ids[0] != contact.ID {
			t.Errorf("an audience: %v %v; want ann alone", ids, err)
		}
		var out strings.Builder
		if err := subjects.Export(ctx, env.Tenant.ID, "csv", &out); err != nil || strings.Contains(out.String(), "acme.example") ||
			!strings.Contains(out.String(), "ann@example.org") {
			t.Errorf("the contacts export: %v\n%s", err, out.String())
		}
		if s, err := subjects.Rectify(ctx, env.Tenant.ID, contact.ID, subject.Patch{
			Email: subject.Optional[string]{Set: true, Value: "ann@new.example.org"}}); err != nil || s.Email != "ann@new.example.org" {
			t.Errorf("a contact: %+v %v", s, err)
		}
	})
}

// TestErasureReachesEveryContactTable: every table with a subject_id
// column is one erasure empties, or one it keeps on purpose.
func TestErasureReachesEveryContactTable(t *testing.T) {
	env := coretest.New(t, "")
	rows, err := env.Core.DB.Read().Query(context.Background(), `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND p.name = 'subject_id' ORDER BY m.name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	kept := map[string]string{
		"subject_keys":         "destroyed first, by Keyring.DestroySubjectKey",
		"audit_events":         "the trail keeps the pseudonymous id; what identified the person was sealed under the destroyed key",
		"audit_event_subjects": "the trail's index of the people a list showed: pseudonymous ids its chained details hold too",
		"backup_forget":        "the erasure's own work list: the id until every kept backup has forgotten the person's key",
		"data_requests":        "the controller's record of handling a request: type, dates, statuses; the extension reason is sealed under the destroyed key",
		"data_request_events":  "the request's history; its notes are sealed under the destroyed key",
		"erasure_certificates": "what is kept of an erasure: when, why, by whom, counts",
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if kept[name] == "" && !slices.Contains(env.Core.Subjects.ErasedTables(), name) {
			t.Errorf("table %s holds rows by subject_id but erasure does not reach it: the package that owns it must clear it in its subject.Eraser (and name it in Tables)", name)
		}
	}
}

// TestListFilters: the contacts list filters by status, restriction and
// legal hold, pages newest first too, and names a bad filter.
func TestListFilters(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		svc, tid := env.Core.Subjects, env.Tenant.ID
		var ids []string
		for i := range 4 {
			s, err := svc.Create(ctx, tid, subject.New{Email: fmt.Sprintf("c%d@example.org", i)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, s.ID)
		}
		if _, err := svc.Restrict(ctx, tid, ids[1], "accuracy disputed"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Hold(ctx, tid, ids[2], "litigation"); err != nil {
			t.Fatal(err)
		}
		yes, no := true, false
		list := func(o subject.ListOptions) []string {
			t.Helper()
			var out []string
			for {
				page, next, err := svc.List(ctx, tid, o)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range page {
					out = append(out, s.ID)
				}
				if next == "" {
					return out
				}
				o.After = next
			}
		}
		for name, c := range map[string]struct {
			o    subject.ListOptions
			want []string
		}{
			"restricted":     {subject.ListOptions{Restricted: &yes}, []string{ids[1]}},
			"not restricted": {subject.ListOptions{Restricted: &no}, []string{ids[0], ids[2], ids[3]}},
			"on hold":        {subject.ListOptions{Held: &yes}, []string{ids[2]}},
			"active":         {subject.ListOptions{Status: subject.StatusActive}, ids},
			"inactive":       {subject.ListOptions{Status: subject.StatusInactive}, nil},
			"newest first":   {subject.ListOptions{Newest: true, Limit: 3}, []string{ids[3], ids[2], ids[1], ids[0]}},
		} {
			if got := list(c.o); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("%s: %v; want %v", name, got, c.want)
			}
		}
		if _, _, err := svc.List(ctx, tid, subject.ListOptions{Status: "gone"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("a bad status: %v", err)
		}
		if n, more, err := svc.ListCount(ctx, tid, subject.ListOptions{Restricted: &no}); err != nil || n != 3 || more {
			t.Errorf("count of the unrestricted: %d %v %v; want 3, exact", n, more, err)
		}
		if n, more, err := svc.ListCount(ctx, tid, subject.ListOptions{}); err != nil || n != 4 || more {
			t.Errorf("count of all: %d %v %v; want 4, exact", n, more, err)
		}

		// A page read is one audit event naming everyone it showed, and
		// each of them finds it among their own events (Art. 15).
		rd := audit.NewReader(env.Core.DB, env.Core.Keys)
		before, _, err := rd.Query(ctx, tid, audit.Filter{Action: "subject.list", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.List(ctx, tid, subject.ListOptions{Limit: 3}); err != nil {
			t.Fatal(err)
		}
		after, _, err := rd.Query(ctx, tid, audit.Filter{Action: "subject.list", Limit: 1000})
		if err != nil || len(after) != len(before)+1 || after[0].Details["count"] != float64(3) {
			t.Fatalf("a page of 3: %d list events after %d (%v); want one more, count 3: %+v", len(after), len(before), err, after[0])
		}
		for _, id := range ids[:3] {
			if mine, _, err := rd.Query(ctx, tid, audit.Filter{SubjectID: id, Action: "subject.list", Limit: 1}); err != nil || len(mine) != 1 || mine[0].Seq != after[0].Seq {
				t.Errorf("%s's events do not hold the page that showed them: %+v %v", id, mine, err)
			}
		}
		if mine, _, err := rd.Query(ctx, tid, audit.Filter{SubjectID: ids[3], Action: "subject.list", Limit: 1}); err != nil || len(mine) == 1 && mine[0].Seq == after[0].Seq {
			t.Errorf("the page of 3 is among the events of the fourth, not shown: %+v %v", mine, err)
		}
	})
}

// An import writes 1 000 contacts a transaction, many rows a statement; a
// contact added meanwhile with the email of a row still to come stops the
// import at that row's line, after the chunks before it, with nothing of
// its own chunk written.
func TestImportStopsAtAContactAddedMeanwhile(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		var rows []subject.ImportRow
		for i := range 1500 {
			rows = append(rows, subject.ImportRow{Line: i + 2, New: subject.New{Email: fmt.Sprintf("p%04d@example.org", i)}})
		}
		subjects := env.Core.Subjects
		before := sqldbtest.Int(t, env.Core.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ?", env.Tenant.ID)
		res, err := subjects.Import(ctx, env.Tenant.ID, rows, nil, subject.ExistingFail, false, func(done, total int) {
			if done == 1000 { // between the two chunks, someone adds line 1 302's person
				if _, err := subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "p1300@example.org"}); err != nil {
					t.Error(err)
				}
			}
		})
		if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "line 1302") || res.Created != 1000 {
			t.Fatalf("Import = %+v, %v; want a conflict naming line 1302 after 1000 created", res, err)
		}
		if n := sqldbtest.Int(t, env.Core.DB, "SELECT count(*) FROM subjects WHERE tenant_id = ?", env.Tenant.ID); n != before+1001 {
			t.Fatalf("%d contacts; want the first chunk and the one added meanwhile (%d)", n, before+1001)
		}
		if n := sqldbtest.Int(t, env.Core.DB, "SELECT count(*) FROM subject_keys WHERE tenant_id = ?", env.Tenant.ID); n != before+1001 {
			t.Fatalf("%d subject keys; want none of the stopped chunk's (%d)", n, before+1001)
		}
	})
}
