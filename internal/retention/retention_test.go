package retention_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

const day = 24 * time.Hour

func create(t *testing.T, env *apptest.Env, email string) string {
	t.Helper()
	r := env.Do(t, env.Token, "POST", "/api/v1/subjects", map[string]any{"email": email, "source": "fair stand"})
	if r.Status != 201 {
		t.Fatalf("create %s: %d %s", email, r.Status, r.Body)
	}
	return r.Map(t)["id"].(string)
}

func status(t *testing.T, env *apptest.Env, id string) (int, subject.Subject) {
	t.Helper()
	var s subject.Subject
	r := env.Do(t, env.Token, "GET", "/api/v1/subjects/"+id, nil)
	if r.Status == 200 {
		r.JSON(t, &s)
	}
	return r.Status, s
}

func run(t *testing.T, env *apptest.Env, dry bool) retention.Report {
	t.Helper()
	var rep retention.Report
	r := env.Do(t, env.Token, "POST", "/api/v1/retention/run", map[string]any{"dry_run": dry})
	if r.JSON(t, &rep); r.Status != 200 {
		t.Fatalf("run: %d %s", r.Status, r.Body)
	}
	return rep
}

// TestBouncedContactsGoAfterThePeriod: hard bounces (reported through the
// API, and refused by the SMTP server) turn a contact inactive after the
// tenant's period, not before; a policy erases inactive contacts after
// its own period, not before; a dry run lists who would go and changes
// nothing; a held contact is never deleted, until the hold is lifted.
func TestBouncedContactsGoAfterThePeriod(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ann, bo, cy, dee := create(t, env, "ann@example.org"), create(t, env, "bo@example.org"),
			create(t, env, "cy@example.org"), create(t, env, "dee@example.org")
		r := env.Do(t, env.Token, "POST", "/api/v1/retention/policies", map[string]any{"name": "Inactive contacts",
			"status": "inactive", "trigger": "inactive_since", "period_days": 90, "action": "erase"})
		if r.Status != 201 {
			t.Fatalf("policy: %d %s", r.Status, r.Body)
		}
		for _, bad := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"name": "x", "trigger": "birthday", "period_days": 1, "action": "erase"}, "trigger"},
			{map[string]any{"name": "x", "trigger": "created", "period_days": 0, "action": "erase"}, "period_days"},
			{map[string]any{"name": "x", "trigger": "created", "period_days": 1, "action": "shred"}, "action"},
			{map[string]any{"name": "x", "trigger": "created", "period_days": 1, "action": "erase", "data_categories": []string{"user.contact.email"}}, "data_categories"},
			{map[string]any{"name": "x", "trigger": "created", "period_days": 1, "action": "anonymise", "data_categories": []string{"user.health_and_medical"}}, "data_categories[0]"},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/retention/policies", bad.body); r.Status != 400 || r.Map(t)["field"] != bad.field {
				t.Errorf("%v: %d %s; want 400 naming %s", bad.body, r.Status, r.Body, bad.field)
			}
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/bounces", map[string]any{"kind": "bounced"}); r.Status != 400 || r.Map(t)["field"] != "kind" {
			t.Errorf("bad bounce: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/bounces", map[string]any{"kind": "hard", "reason": "550 ann@example.org unknown"}); r.Status != 400 || r.Map(t)["field"] != "reason" {
			t.Errorf("bounce reason quoting an address: %d %s", r.Status, r.Body)
		}
		for id, kind := range map[string]string{ann: "hard", bo: "soft", cy: "hard"} {
			r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+id+"/bounces", map[string]any{"kind": kind, "reason": "5.1.1"})
			if r.Status != 201 || r.Map(t)["status"] != "active" {
				t.Fatalf("bounce %s: %d %s", kind, r.Status, r.Body)
			}
		}
		// dee's address is refused by the SMTP server itself.
		ctx := context.Background()
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "News", "legal_basis": "consent",
			"data_categories": []string{"user.contact.email"}, "notice_text": "News."}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		env.Mail.Refuse(550)
		c, err := env.App.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "ask", Purpose: "news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{dee}})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := env.App.Consent.Campaign(ctx, env.Tenant.ID, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, d := status(t, env, dee)
			if got.Counts.Bounced == 1 && d.BouncingSince != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the SMTP refusal was not recorded: %+v, dee %+v", got.Counts, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		env.Mail.Refuse(0)

		env.Now.Advance(29 * day)
		if rep := run(t, env, false); rep.Deactivated != 0 {
			t.Fatalf("inactive before the period: %+v", rep)
		}
		env.Now.Advance(2 * day)
		if rep := run(t, env, false); rep.Deactivated != 3 {
			t.Fatalf("after the period: %+v", rep)
		}
		for id, want := range map[string]string{ann: "inactive", bo: "active", cy: "inactive", dee: "inactive"} {
			if code, s := status(t, env, id); code != 200 || s.Status != want {
				t.Errorf("%s: %d %s, want %s", id, code, s.Status, want)
			}
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/subjects/"+cy+"/legal-hold", map[string]any{"reason": ""}); r.Status != 400 {
			t.Errorf("hold without reason: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/subjects/"+cy+"/legal-hold", map[string]any{"reason": "Case 2026-114"}); r.Status != 200 || r.Map(t)["legal_hold"] != true {
			t.Fatalf("hold: %d %s", r.Status, r.Body)
		}

		if _, err := env.App.Subjects.Erase(ctx, env.Tenant.ID, cy, subject.EraseInput{Reason: "api"}); !errs.Is(err, errs.Conflict) {
			t.Fatalf("erasing a held contact: %v", err)
		}

		env.Now.Advance(89 * day)
		if rep := run(t, env, false); rep.Policies[0].Count != 0 {
			t.Fatalf("erased before the policy's period: %+v", rep)
		}
		env.Now.Advance(2 * day)
		preview := run(t, env, true)
		var who []string
		for _, s := range preview.Policies[0].Subjects {
			who = append(who, s.Email)
		}
		if preview.Policies[0].Count != 2 || strings.Join(who, ",") != "ann@example.org,dee@example.org" {
			t.Fatalf("dry run: %+v", preview.Policies)
		}
		if code, _ := status(t, env, ann); code != 200 {
			t.Fatalf("the dry run deleted ann: %d", code)
		}
		if rep := run(t, env, false); rep.Policies[0].Count != 2 {
			t.Fatalf("run: %+v", rep)
		}
		for id, want := range map[string]int{ann: 410, dee: 410, bo: 200, cy: 200} {
			if code, _ := status(t, env, id); code != want {
				t.Errorf("after the run %s: %d, want %d", id, code, want)
			}
		}
		if _, err := env.App.Keys.SubjectKey(ctx, env.App.DB.Read(), env.Tenant.ID, ann); err == nil {
			t.Error("an erased contact's key survived")
		}

		env.Now.Advance(200 * day)
		if rep := run(t, env, false); rep.Policies[0].Count != 0 {
			t.Fatalf("a held contact went: %+v", rep)
		}
		if code, s := status(t, env, cy); code != 200 || !s.LegalHold {
			t.Fatalf("held contact: %d %+v", code, s)
		}
		if r := env.Do(t, env.Token, "DELETE", "/api/v1/subjects/"+cy+"/legal-hold", nil); r.Status != 200 || r.Map(t)["legal_hold"] != false {
			t.Fatalf("release: %d %s", r.Status, r.Body)
		}
		if rep := run(t, env, false); rep.Policies[0].Count != 1 {
			t.Fatalf("after the release: %+v", rep)
		}
		if code, _ := status(t, env, cy); code != 410 {
			t.Errorf("released contact: %d", code)
		}

		events, _, err := audit.NewReader(env.App.DB, env.App.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "retention.run", Limit: 100})
		if err != nil || len(events) != 7 {
			t.Fatalf("retention.run events: %d %v", len(events), err)
		}
		erased, _, err := audit.NewReader(env.App.DB, env.App.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "subject.erase", Limit: 100})
		if err != nil || len(erased) != 3 || erased[0].Details["trigger"] != "inactive_since" {
			t.Fatalf("subject.erase events: %+v %v", erased, err)
		}
	})
}

// TestAnonymiseKeepsTheCount: anonymisation narrowed to a data category
// clears that field only; a whole anonymisation leaves a row that counts
// but says nothing about anyone.
func TestAnonymiseKeepsTheCount(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		ctx := context.Background()
		r := env.Do(t, env.Token, "POST", "/api/v1/subjects", map[string]any{"email": "ann@example.org", "phone": "+33123456789"})
		ann := r.Map(t)["id"].(string)
		bo := create(t, env, "bo@example.org")
		rs := env.App.Retention
		phones, err := rs.CreatePolicy(ctx, env.Tenant.ID, retention.PolicyInput{Name: ptr("phones after 300 days"),
			Trigger: ptr(retention.Created), PeriodDays: ptr(300), Action: ptr(retention.Anonymise),
			DataCategories: &[]string{"user.contact.phone_number"}})
		if err != nil {
			t.Fatal(err)
		}
		env.Now.Advance(301 * day)
		if rep, err := rs.Run(ctx, env.Tenant.ID, false); err != nil || rep.Policies[0].Count != 2 {
			t.Fatalf("run: %+v %v", rep, err)
		}
		if _, s := status(t, env, ann); s.Phone != "" || s.Email != "ann@example.org" || s.Status != "active" {
			t.Fatalf("narrowed anonymisation: %+v", s)
		}
		if _, err := rs.UpdatePolicy(ctx, env.Tenant.ID, phones.ID, retention.PolicyInput{DataCategories: &[]string{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Run(ctx, env.Tenant.ID, false); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{ann, bo} {
			if code, s := status(t, env, id); code != 200 || s.Status != "anonymised" || s.Email != "" || s.CreatedAt.IsZero() {
				t.Errorf("anonymised %s: %d %+v", id, code, s)
			}
		}
		var page struct{ Items []subject.Subject }
		if env.Do(t, env.Token, "GET", "/api/v1/subjects", nil).JSON(t, &page); len(page.Items) != 3 { // with the owner
			t.Errorf("list with anonymised contacts: %+v", page.Items)
		}
		if r := env.Do(t, env.Token, "GET", "/api/v1/subjects?email=ann%40example.org", nil); strings.Contains(string(r.Body), ann) {
			t.Errorf("an anonymised contact is still found by email: %s", r.Body)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestErasureReachesEveryContactTable: every table with a subject_id
// column is one erasure empties, or one it keeps on purpose.
func TestErasureReachesEveryContactTable(t *testing.T) {
	env := apptest.New(t, "")
	rows, err := env.App.DB.Read().Query(context.Background(), `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND p.name = 'subject_id' ORDER BY m.name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	kept := map[string]string{
		"subject_keys":         "destroyed first, by keyring.DestroySubjectKey",
		"users":                "accounts are closed, never erased by retention",
		"audit_events":         "the trail keeps the pseudonymous id; what identified the person was sealed under the destroyed key",
		"data_requests":        "the controller's record of handling a request: type, dates, statuses; the extension reason is sealed under the destroyed key",
		"data_request_events":  "the request's history; its notes are sealed under the destroyed key",
		"erasure_certificates": "what is kept of an erasure: when, why, by whom, counts",
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if kept[name] == "" && !slices.Contains(subject.ContactTables, name) {
			t.Errorf("table %s holds rows by subject_id but erasure does not reach it: add it to subject.ContactTables", name)
		}
	}
}

// TestAddressWorksAgain: with a period of 0 a hard bounce makes a contact
// inactive at once; a new address makes it active again; mail accepted by
// the SMTP server clears an earlier bounce.
func TestAddressWorksAgain(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/retention", map[string]any{"inactive_after_bounce_days": 0}); r.Status != 200 {
			t.Fatalf("settings: %d %s", r.Status, r.Body)
		}
		ann, bo := create(t, env, "ann@example.org"), create(t, env, "bo@example.org")
		r := env.Do(t, env.Token, "POST", "/api/v1/subjects/"+ann+"/bounces", map[string]any{"kind": "hard", "reason": "5.1.1"})
		if r.Status != 201 || r.Map(t)["status"] != "inactive" {
			t.Fatalf("bounce with period 0: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PATCH", "/api/v1/subjects/"+ann, map[string]any{"email": "ann@new.example.org"}); r.Status != 200 ||
			r.Map(t)["status"] != "active" || r.Map(t)["bouncing_since"] != nil {
			t.Fatalf("new address: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/retention", map[string]any{"inactive_after_bounce_days": 30}); r.Status != 200 {
			t.Fatalf("settings: %d %s", r.Status, r.Body)
		}
		env.Do(t, env.Token, "POST", "/api/v1/subjects/"+bo+"/bounces", map[string]any{"kind": "hard"})
		if _, s := status(t, env, bo); s.BouncingSince == nil || s.Status != "active" {
			t.Fatalf("bounced: %+v", s)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/purposes", map[string]any{"key": "news", "name": "News", "legal_basis": "consent",
			"data_categories": []string{"user.contact.email"}, "notice_text": "News."}); r.Status != 201 {
			t.Fatalf("purpose: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/campaigns", map[string]any{"name": "ask", "purpose": "news", "audience": "subjects",
			"subject_ids": []string{bo}}); r.Status != 201 {
			t.Fatalf("campaign: %d %s", r.Status, r.Body)
		}
		env.Mail.Wait(t, "bo@example.org", "consent", 10*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, s := status(t, env, bo); s.BouncingSince == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a delivered mail did not clear the bounce")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
