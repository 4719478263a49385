package api_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

// TestErasureCompleteness seeds one person into every store — the subject
// with attributes, where their consent came from, a campaign mail, a
// legal hold, a bounce, an account that signed in (sessions, TOTP, a
// passkey, a lock notice), audit events with them as actor, a request
// with notes and an extension mailed to them, an objection, a
// restriction, an unconfirmed request on the privacy portal, a folder
// linked to them holding a file — erases them through the API, and then
// looks at every byte the store holds: none of their values, nor their
// wrapped data key, nor the blind indexes that could confirm their email,
// phone or external id, is left, nor the blobs of their files; the only
// rows still naming their (random) id are the audit trail, the request's
// record and the erasure certificate; the audit chain still verifies.
func TestErasureCompleteness(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		made := seedSecrets(t, env)
		id, err := env.App.Subjects.IDByEmail(ctx, env.App.DB.Read(), env.Tenant.ID, secrets[0])
		if err != nil {
			t.Fatal(err)
		}
		req, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "erasure", SubjectID: id, Channel: "phone",
			Note: "Called from " + secrets[1]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Rights.Update(ctx, env.Tenant.ID, req.ID, rights.Change{Status: rights.Verified, Note: "Knew " + secrets[4]}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Rights.Extend(ctx, env.Tenant.ID, req.ID, "Archive at "+secrets[4]); err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Subjects.RecordBounce(ctx, env.Tenant.ID, id, subject.BounceInput{Kind: subject.SoftBounce, Reason: "4.2.2"}); err != nil {
			t.Fatal(err)
		}
		// An objection (open), a restriction with a reason naming them, and
		// a portal request they have not confirmed yet.
		if _, err := env.App.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{Key: "analytics", Name: "Analytics",
			LegalBasis: register.LegitimateInterests, DataCategories: []string{"user.contact.email"}}}); err != nil {
			t.Fatal(err)
		}
		obj, err := env.App.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "objection", SubjectID: id, Purposes: []string{"analytics"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Rights.Update(ctx, env.Tenant.ID, obj.ID, rights.Change{Status: rights.Verified}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.App.Subjects.Restrict(ctx, env.Tenant.ID, id, "Disputes "+secrets[4]); err != nil {
			t.Fatal(err)
		}
		if err := env.App.Rights.Intake(ctx, env.Tenant.Slug, rights.PortalInput{Type: "access", Email: secrets[0], Details: "I live at " + secrets[4]}); err != nil {
			t.Fatal(err)
		}
		// A file about them in a folder linked to them (the tenant's policy
		// deletes linked files), in two versions.
		sp := env.Do(t, env.Token, "POST", "/api/v1/spaces", map[string]any{"name": "Clients"}).Map(t)["id"].(string)
		for _, body := range []string{"Contract with " + secrets[4], "Signed contract with " + secrets[4]} {
			if r := env.DoRaw(t, env.Token, "PUT", "/api/v1/spaces/"+sp+"/files/"+secrets[3]+"/contract.txt", "text/plain", body); r.Status >= 300 {
				t.Fatalf("upload: %d %s", r.Status, r.Body)
			}
		}
		folder := sqldbtest.Strings(t, env.App.DB, "SELECT id FROM nodes WHERE tenant_id = ? AND kind = 'folder'", env.Tenant.ID)
		if r := env.Do(t, env.Token, "PUT", "/api/v1/files/"+folder[0]+"/subjects/"+id, nil); r.Status != 201 {
			t.Fatalf("link: %d %s", r.Status, r.Body)
		}
		regions := filepath.Join(env.DataDir, "regions")
		if n := len(apptest.Files(t, regions)); n != 2 {
			t.Fatalf("%d blobs before the erasure; want 2", n)
		}
		// What would unlock or confirm them, taken before the erasure.
		var unlock [][]byte
		unlock = append(unlock, sqldbtest.Bytes(t, env.App.DB, "SELECT wrapped FROM subject_keys WHERE tenant_id = ? AND subject_id = ?", env.Tenant.ID, id))
		unlock = append(unlock, sqldbtest.Bytes(t, env.App.DB, `SELECT wrapped FROM subject_keys WHERE tenant_id = ? AND subject_id = (SELECT id FROM portal_intakes)`, env.Tenant.ID))
		for field, v := range map[string]string{"email": secrets[0], "phone": "+" + secrets[2], "external_id": secrets[3]} {
			idx, err := env.App.Keys.BlindIndex(ctx, env.App.DB.Read(), env.Tenant.ID, field, v)
			if err != nil {
				t.Fatal(err)
			}
			unlock = append(unlock, idx)
		}
		for _, b := range unlock {
			if !bytes.Contains(dumpStore(t, env), b) {
				t.Fatalf("the store does not hold %x before the erasure: the check below would prove nothing", b)
			}
		}
		acted := sqldbtest.Strings(t, env.App.DB, "SELECT id FROM audit_events WHERE tenant_id = ? AND actor_subject_id = ?", env.Tenant.ID, id)
		if len(acted) == 0 {
			t.Fatal("the person never acted: the audit actor part of the test would prove nothing")
		}

		// They have an account: the subjects API refuses and names the
		// account's route, which a recently signed-in owner uses.
		account, err := env.App.Identity.UserByEmail(ctx, env.Tenant.ID, secrets[0])
		if err != nil {
			t.Fatal(err)
		}
		eraseAccount := "/api/v1/users/" + account.ID + "/erase"
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+id+"/erase", map[string]any{"request_id": req.ID}); r.Status != 409 ||
			!strings.Contains(string(r.Body), eraseAccount) {
			t.Fatalf("erasing an account through the subjects API: %d %s", r.Status, r.Body)
		}
		owner := env.SignIn(t, "acme", "owner@acme.example")
		if r := owner.Do(t, "POST", eraseAccount, map[string]any{"request_id": req.ID}); r.Status != 409 {
			t.Fatalf("erasing a held subject: %d %s", r.Status, r.Body)
		}
		if _, err := env.App.Subjects.Release(ctx, env.Tenant.ID, id); err != nil {
			t.Fatal(err)
		}
		var cert subject.Certificate
		r := owner.Do(t, "POST", eraseAccount, map[string]any{"request_id": req.ID})
		if r.JSON(t, &cert); r.Status != 200 || cert.RequestID != req.ID || cert.Erased["subjects"] != 1 || cert.Erased["users"] != 1 ||
			cert.Erased["consent_events"] != 1 || cert.Erased["sessions"] == 0 {
			t.Fatalf("erase: %d %s", r.Status, r.Body)
		}

		if left := apptest.Files(t, regions); len(left) != 0 {
			t.Errorf("blobs of their linked files left: %v", left)
		}
		if n := sqldbtest.Strings(t, env.App.DB, "SELECT id FROM nodes WHERE tenant_id = ?", env.Tenant.ID); len(n) != 0 {
			t.Errorf("their linked folder and file are still there: %v", n)
		}
		dump := dumpStore(t, env)
		assertNoSecrets(t, "the store after the erasure", dump, made...)
		for _, b := range unlock {
			if bytes.Contains(dump, b) {
				t.Errorf("the store still holds %x (a wrapped data key or blind index of the erased person)", b)
			}
		}
		if _, err := env.App.Keys.SubjectKey(ctx, env.App.DB.Read(), env.Tenant.ID, id); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Errorf("their key: %v", err)
		}
		kept := map[string]bool{"audit_events": true, "audit_event_subjects": true, "backup_forget": true, "data_requests": true, "data_request_events": true, "erasure_certificates": true}
		for _, table := range sqldbtest.Strings(t, env.App.DB, subjectTables(env)) {
			n := sqldbtest.Strings(t, env.App.DB, "SELECT subject_id FROM "+table+" WHERE tenant_id = ? AND subject_id = ?", env.Tenant.ID, id)
			if len(n) > 0 && !kept[table] {
				t.Errorf("%s still has %d rows of the erased person", table, len(n))
			}
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id, nil); r.Status != 410 {
			t.Errorf("GET after erasure: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+id+"/erase", nil); r.Status != 410 {
			t.Errorf("erasing twice: %d", r.Status)
		}
		var again subject.Certificate
		if env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id+"/erasure", nil).JSON(t, &again); again.RequestID != req.ID || !again.ErasedAt.Equal(cert.ErasedAt) {
			t.Errorf("certificate: %+v", again)
		}
		var done rights.Request
		if env.Do(t, env.Token, "GET", "/api/v1/requests/"+req.ID, nil).JSON(t, &done); done.Status != rights.Completed ||
			done.ExtensionReason != "" || done.History[0].Note != "" {
			t.Errorf("the request after the erasure: %+v", done)
		}
		es, _, err := audit.NewReader(env.App.DB, env.App.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Actor: id, Limit: 1000})
		if err != nil || len(es) == 0 {
			t.Fatalf("their audit events: %d %v", len(es), err)
		}
		for _, e := range es {
			if e.Actor.Display != "erased subject #"+id || e.IP != "" || e.UserAgent != "" {
				t.Fatalf("an audit event still shows who acted: %+v", e.Actor)
			}
		}
		var v audit.Verdict
		if env.Do(t, env.Token, "GET", "/api/v1/audit/verify", nil).JSON(t, &v); !v.OK {
			t.Errorf("the audit chain after the erasure: %+v", v)
		}
	})
}

// subjectTables lists the tables with a subject_id column.
func subjectTables(env *apptest.Env) string {
	if env.App.DB.Dialect() == sqldb.SQLite {
		return `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name = 'subject_id'`
	}
	return `SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'subject_id'`
}
