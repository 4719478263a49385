package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/identity/passkeytest"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

// The store as a whole, through the API: personal values are never found
// in clear in the database, its files or the logs (including the request
// logs, whose URLs can carry an email), and an erasure leaves nothing of
// the person anywhere.

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
