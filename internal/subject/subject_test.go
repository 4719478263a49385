package subject_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/passkeytest"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/register"
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
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		s := env.App.Subjects
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
		if err := env.App.DB.Read().QueryRow(ctx, "SELECT details FROM audit_events WHERE tenant_id = ? AND action = 'subject.rectify'", tid).Scan(&details); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(details, `"email"`) || strings.Contains(details, "ann") || strings.Contains(details, "en\"") {
			t.Errorf("rectify audit details = %s", details)
		}
	})
}

func TestOtherTenantSeesNothing(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		s := env.App.Subjects
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
		if list, _, err := s.List(ctx, other.ID, subject.ListOptions{Limit: 100}); err != nil || len(list) != 1 || list[0].Email != "owner@globex.example" {
			t.Errorf("List of other tenant = %+v, %v; want only its own owner", list, err)
		}
		// The same email may exist in both tenants: indexes are per tenant.
		if _, err := s.Create(ctx, other.ID, subject.New{Email: "shared@example.org", ExternalID: "x-1"}); err != nil {
			t.Errorf("same email in another tenant: %v", err)
		}
	})
}

func TestMovedCiphertextDoesNotDecrypt(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		s, db, tid := env.App.Subjects, env.App.DB, env.Tenant.ID
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
			if err := db.WithTx(ctx, func(tx *sqldb.Tx) error {
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

// secrets are values that must never be found in clear at rest.
var secrets = []string{"zelda.quartermaine@example.net", "+447700900123", "447700900123", "ext-zq-77821",
	"Quartermaine-Street-42", "Newsletter-Fair-2026", "zelda.quartermaine",
	"ZeldaBrowser/9.1 (quartermaine)", "203.0.113.77", "a tidal orchard hums 5150"}

// seedSecrets stores the secrets everywhere personal data goes — the
// subject, where its consent came from, group and space names, an account signed in from a known IP and
// browser, a TOTP seed, a lock notice in the mail outbox — and returns the values made on the
// way (the TOTP seed) that must not be found either.
func seedSecrets(t *testing.T, env *apptest.Env) []string {
	t.Helper()
	ctx := context.Background()
	sub, err := env.App.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: secrets[0], Phone: secrets[1], ExternalID: secrets[3],
		Attributes: map[string]any{"address": secrets[4]}, Source: secrets[5]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.App.Subjects.Get(ctx, env.Tenant.ID, sub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.App.Subjects.Find(ctx, env.Tenant.ID, subject.Lookup{Email: secrets[0]}); err != nil {
		t.Fatal(err)
	}
	r := env.Do(t, env.Token, "GET", "/api/v1/subjects?email="+secrets[0], nil)
	if r.Status != 200 {
		t.Fatalf("lookup over HTTP: %d %s", r.Status, r.Body)
	}
	// Where consent came from is personal too (the source, the IP).
	if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{NoticeText: "News by email.", Purpose: register.Purpose{
		Key: "news", Name: "News", LegalBasis: register.Consent, DataCategories: []string{"user.contact.email"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.App.Consent.Record(ctx, env.Tenant.ID, sub.ID, consent.Input{Purpose: "news", Action: consent.Grant,
		Method: "web_form", Source: secrets[5], IP: secrets[8]}); err != nil {
		t.Fatal(err)
	}
	// Names of groups and spaces may name people too.
	for path, name := range map[string]string{"/api/v1/groups": "Team " + secrets[4], "/api/v1/spaces": "Contract " + secrets[4]} {
		if r := env.Do(t, env.Token, "POST", path, map[string]string{"name": name}); r.Status != 201 {
			t.Fatalf("POST %s: %d %s", path, r.Status, r.Body)
		}
	}
	seed := seedAccount(t, env)
	// A legal hold's reason may name the person; a campaign mails them.
	if _, err := env.App.Subjects.Hold(ctx, env.Tenant.ID, sub.ID, "Dispute "+secrets[4]); err != nil {
		t.Fatal(err)
	}
	if _, err := env.App.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "refresh", Purpose: "news",
		Audience: consent.AudienceSubjects, SubjectIDs: []string{sub.ID}}); err != nil {
		t.Fatal(err)
	}
	return []string{seed}
}

// seedAccount makes the seeded subject a user who signs in, enrols TOTP,
// registers a passkey under a name that names them, starts a passkey
// sign-in and then gets locked out (a mail is queued); it returns the TOTP
// seed.
func seedAccount(t *testing.T, env *apptest.Env) string {
	t.Helper()
	ctx := context.Background()
	env.AddUser(t, secrets[0], "member", secrets[9])
	client := identity.Client{IP: secrets[8], UserAgent: secrets[7]}
	res, err := env.App.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: secrets[0], Password: secrets[9], Client: client})
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.App.Identity.AuthenticateSession(ctx, res.Session)
	if err != nil {
		t.Fatal(err)
	}
	e, err := env.App.Identity.EnrolTOTP(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// A passkey named after the person, and a sign-in waiting for it.
	opts, err := env.App.Identity.EnrolPasskey(ctx, p, "Key of "+secrets[4])
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(opts)
	key := passkeytest.New(t, env.App.Config.PublicURL)
	if _, err := env.App.Identity.ConfirmPasskey(ctx, p, key.Create(t, raw)); err != nil {
		t.Fatal(err)
	}
	pending, err := env.App.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: secrets[0], Password: secrets[9], Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.App.Identity.BeginPasskeySignIn(ctx, pending.Session); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		_, _ = env.App.Identity.Login(ctx, identity.LoginInput{Tenant: "acme", Email: secrets[0], Password: "wrong wrong wrong", Client: client})
	}
	if st, err := env.App.Mail.Counts(ctx, env.Tenant.ID); err != nil || st.Waiting+st.Sent != 1 {
		t.Fatalf("no lock notice queued: %+v %v", st, err)
	}
	return e.Secret
}

func TestNoPlaintextAtRest(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		made := seedSecrets(t, env)
		assertNoSecrets(t, "the database", dumpStore(t, env), made...)
		assertNoSecrets(t, "logs", []byte(env.Logs.String()), made...)
	})
}

// dumpStore returns every byte the store holds: on SQLite the whole data
// dir (database file and WAL, read while the app runs so the WAL holds the
// fresh pages); on PostgreSQL the text of every row of every table, and
// every bytea column raw.
func dumpStore(t *testing.T, env *apptest.Env) []byte {
	t.Helper()
	ctx := context.Background()
	if env.App.DB.Dialect() == sqldb.SQLite {
		var all []byte
		err := filepath.Walk(env.DataDir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			all = append(all, b...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(env.DataDir, "custodia.db-wal")); err != nil {
			t.Fatalf("expected a WAL file: %v", err)
		}
		return all
	}
	tables := sqldbtest.Strings(t, env.App.DB, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
	if len(tables) < 8 {
		t.Fatalf("found only tables %v", tables)
	}
	var dump bytes.Buffer
	for _, table := range tables {
		// Text of every row, bytea as hex and as escaped bytes.
		for _, expr := range []string{"row_to_json(t)::text", "encode(convert_to(row_to_json(t)::text, 'UTF8'), 'escape')"} {
			r, err := env.App.DB.Read().Query(ctx, "SELECT "+expr+" FROM "+table+" t")
			if err != nil {
				t.Fatal(err)
			}
			for r.Next() {
				var s string
				if err := r.Scan(&s); err != nil {
					t.Fatal(err)
				}
				dump.WriteString(s)
			}
			r.Close()
		}
		var raw []byte // the bytea columns themselves, as bytes
		cols := sqldbtest.Strings(t, env.App.DB, `SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type = 'bytea'`, table)
		for _, c := range cols {
			rr, err := env.App.DB.Read().Query(ctx, "SELECT "+c+" FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			for rr.Next() {
				_ = rr.Scan(&raw)
				dump.Write(raw)
			}
			rr.Close()
		}
	}
	if !strings.Contains(dump.String(), "subject.create") {
		t.Fatal("the dump does not look like a dump of the database")
	}
	return dump.Bytes()
}

func assertNoSecrets(t *testing.T, where string, b []byte, more ...string) {
	t.Helper()
	lower := bytes.ToLower(b)
	for _, s := range append(slices.Clone(secrets), more...) {
		if bytes.Contains(lower, bytes.ToLower([]byte(s))) {
			t.Errorf("%s holds %q in clear", where, s)
		}
	}
}
