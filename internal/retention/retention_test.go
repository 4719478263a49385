package retention_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

const day = 24 * time.Hour

func create(t *testing.T, env *coretest.Env, email string) string {
	t.Helper()
	s, err := env.Core.Subjects.Create(context.Background(), env.Tenant.ID, subject.New{Email: email, Source: "fair stand"})
	if err != nil {
		t.Fatalf("create %s: %v", email, err)
	}
	return s.ID
}

// status reads a subject: its error's kind ("" when it reads) and the
// subject.
func status(t *testing.T, env *coretest.Env, id string) (errs.Kind, subject.Subject) {
	t.Helper()
	s, err := env.Core.Subjects.Get(context.Background(), env.Tenant.ID, id)
	if err != nil {
		return errs.KindOf(err), s
	}
	return -1, s
}

// reads is what status answers for a subject that reads.
const reads errs.Kind = -1

func run(t *testing.T, env *coretest.Env, dry bool) retention.Report {
	t.Helper()
	rep, err := env.Core.Retention.Run(context.Background(), env.Tenant.ID, dry)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

// input decodes the JSON of v into a T: the inputs the API would decode.
func input[T any](t *testing.T, v any) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var in T
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// field is the field an invalid input error names ("" for any other).
func field(err error) string {
	if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
		return e.Field
	}
	return ""
}

func bounce(t *testing.T, env *coretest.Env, id string, in map[string]any) (subject.Bounce, error) {
	t.Helper()
	return env.Core.Retention.RecordBounce(context.Background(), env.Tenant.ID, id, input[subject.BounceInput](t, in))
}

func newsPurpose(t *testing.T, env *coretest.Env) {
	t.Helper()
	if _, err := env.Core.Register.Create(context.Background(), env.Tenant.ID, register.New{NoticeText: "News.", Purpose: register.Purpose{
		Key: "news", Name: "News", LegalBasis: register.Consent, DataCategories: []string{"user.contact.email"}}}); err != nil {
		t.Fatalf("purpose: %v", err)
	}
}

// TestBouncedContactsGoAfterThePeriod: hard bounces (reported through the
// API, and refused by the SMTP server) turn a contact inactive after the
// tenant's period, not before; a policy erases inactive contacts after
// its own period, not before; a dry run lists who would go and changes
// nothing; a held contact is never deleted, until the hold is lifted.
func TestBouncedContactsGoAfterThePeriod(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ann, bo, cy, dee := create(t, env, "ann@example.org"), create(t, env, "bo@example.org"),
			create(t, env, "cy@example.org"), create(t, env, "dee@example.org")
		ctx := context.Background()
		policy := func(body map[string]any) error {
			_, err := env.Core.Retention.CreatePolicy(ctx, env.Tenant.ID, input[retention.PolicyInput](t, body))
			return err
		}
		if err := policy(map[string]any{"name": "Inactive contacts",
			"status": "inactive", "trigger": "inactive_since", "period_days": 90, "action": "erase"}); err != nil {
			t.Fatalf("policy: %v", err)
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
			if err := policy(bad.body); field(err) != bad.field {
				t.Errorf("%v: %v; want invalid naming %s", bad.body, err, bad.field)
			}
		}
		if _, err := bounce(t, env, ann, map[string]any{"kind": "bounced"}); field(err) != "kind" {
			t.Errorf("bad bounce: %v", err)
		}
		if _, err := bounce(t, env, ann, map[string]any{"kind": "hard", "reason": "550 ann@example.org unknown"}); field(err) != "reason" {
			t.Errorf("bounce reason quoting an address: %v", err)
		}
		for id, kind := range map[string]string{ann: "hard", bo: "soft", cy: "hard"} {
			if b, err := bounce(t, env, id, map[string]any{"kind": kind, "reason": "5.1.1"}); err != nil || b.Status != "active" {
				t.Fatalf("bounce %s: %+v %v", kind, b, err)
			}
		}
		// dee's address is refused by the SMTP server itself.
		newsPurpose(t, env)
		env.Mail.Refuse(550)
		c, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "ask", Purpose: "news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{dee}})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := env.Core.Consent.Campaign(ctx, env.Tenant.ID, c.ID)
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
			if kind, s := status(t, env, id); kind != reads || s.Status != want {
				t.Errorf("%s: %v %s, want %s", id, kind, s.Status, want)
			}
		}
		if _, err := env.Core.Subjects.Hold(ctx, env.Tenant.ID, cy, ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("hold without reason: %v", err)
		}
		if s, err := env.Core.Subjects.Hold(ctx, env.Tenant.ID, cy, "Case 2026-114"); err != nil || !s.LegalHold {
			t.Fatalf("hold: %+v %v", s, err)
		}

		if _, err := env.Core.Subjects.Erase(ctx, env.Tenant.ID, cy, subject.EraseInput{Reason: "api"}); !errs.Is(err, errs.Conflict) {
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
		if kind, _ := status(t, env, ann); kind != reads {
			t.Fatalf("the dry run deleted ann: %v", kind)
		}
		if rep := run(t, env, false); rep.Policies[0].Count != 2 {
			t.Fatalf("run: %+v", rep)
		}
		for id, want := range map[string]errs.Kind{ann: errs.Gone, dee: errs.Gone, bo: reads, cy: reads} {
			if kind, _ := status(t, env, id); kind != want {
				t.Errorf("after the run %s: %v, want %v", id, kind, want)
			}
		}
		if _, err := env.Core.Keys.SubjectKey(ctx, env.Core.DB.Read(), env.Tenant.ID, ann); err == nil {
			t.Error("an erased contact's key survived")
		}

		env.Now.Advance(200 * day)
		if rep := run(t, env, false); rep.Policies[0].Count != 0 {
			t.Fatalf("a held contact went: %+v", rep)
		}
		if kind, s := status(t, env, cy); kind != reads || !s.LegalHold {
			t.Fatalf("held contact: %v %+v", kind, s)
		}
		if s, err := env.Core.Subjects.Release(ctx, env.Tenant.ID, cy); err != nil || s.LegalHold {
			t.Fatalf("release: %+v %v", s, err)
		}
		if rep := run(t, env, false); rep.Policies[0].Count != 1 {
			t.Fatalf("after the release: %+v", rep)
		}
		if kind, _ := status(t, env, cy); kind != errs.Gone {
			t.Errorf("released contact: %v", kind)
		}

		events, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "retention.run", Limit: 100})
		if err != nil || len(events) != 7 {
			t.Fatalf("retention.run events: %d %v", len(events), err)
		}
		erased, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, env.Tenant.ID, audit.Filter{Action: "subject.erase", Limit: 100})
		if err != nil || len(erased) != 3 || erased[0].Details["trigger"] != "inactive_since" {
			t.Fatalf("subject.erase events: %+v %v", erased, err)
		}
	})
}

// TestAnonymiseKeepsTheCount: anonymisation narrowed to a data category
// clears that field only; a whole anonymisation leaves a row that counts
// but says nothing about anyone.
func TestAnonymiseKeepsTheCount(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		a, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "ann@example.org", Phone: "+33123456789"})
		if err != nil {
			t.Fatal(err)
		}
		ann := a.ID
		bo := create(t, env, "bo@example.org")
		rs := env.Core.Retention
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
			if kind, s := status(t, env, id); kind != reads || s.Status != "anonymised" || s.Email != "" || s.CreatedAt.IsZero() {
				t.Errorf("anonymised %s: %v %+v", id, kind, s)
			}
		}
		if page, _, err := env.Core.Subjects.List(ctx, env.Tenant.ID, subject.ListOptions{}); err != nil || len(page) != 2 { // not the owner: staff are not contacts
			t.Errorf("list with anonymised contacts: %+v %v", page, err)
		}
		if found, err := env.Core.Subjects.Find(ctx, env.Tenant.ID, subject.Lookup{Email: "ann@example.org"}); err != nil || len(found) != 0 {
			t.Errorf("an anonymised contact is still found by email: %+v %v", found, err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestAddressWorksAgain: with a period of 0 a hard bounce makes a contact
// inactive at once; a new address makes it active again; mail accepted by
// the SMTP server clears an earlier bounce.
func TestAddressWorksAgain(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		if _, err := env.Core.Retention.UpdateSettings(ctx, env.Tenant.ID, retention.Settings{InactiveAfterBounceDays: 0}); err != nil {
			t.Fatalf("settings: %v", err)
		}
		ann, bo := create(t, env, "ann@example.org"), create(t, env, "bo@example.org")
		if b, err := bounce(t, env, ann, map[string]any{"kind": "hard", "reason": "5.1.1"}); err != nil || b.Status != "inactive" {
			t.Fatalf("bounce with period 0: %+v %v", b, err)
		}
		s, err := env.Core.Subjects.Rectify(ctx, env.Tenant.ID, ann, input[subject.Patch](t, map[string]any{"email": "ann@new.example.org"}))
		if err != nil || s.Status != "active" || s.BouncingSince != nil {
			t.Fatalf("new address: %+v %v", s, err)
		}
		if _, err := env.Core.Retention.UpdateSettings(ctx, env.Tenant.ID, retention.Settings{InactiveAfterBounceDays: 30}); err != nil {
			t.Fatalf("settings: %v", err)
		}
		if _, err := bounce(t, env, bo, map[string]any{"kind": "hard"}); err != nil {
			t.Fatal(err)
		}
		if _, s := status(t, env, bo); s.BouncingSince == nil || s.Status != "active" {
			t.Fatalf("bounced: %+v", s)
		}
		newsPurpose(t, env)
		if _, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "ask", Purpose: "news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{bo}}); err != nil {
			t.Fatalf("campaign: %v", err)
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

// TestRetentionLeavesAccounts: retention never selects a person with a
// user account — staff are not contacts; their accounts are closed, not
// expired — in a dry run or a real one.
func TestRetentionLeavesAccounts(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ann := create(t, env, "ann@example.org")
		env.AddUser(t, "mo@acme.example", "member", coretest.Password)
		for _, action := range []string{retention.Anonymise, retention.Erase} {
			if _, err := env.Core.Retention.CreatePolicy(ctx, env.Tenant.ID, retention.PolicyInput{Name: ptr(action + " after a day"),
				Trigger: ptr(retention.Created), PeriodDays: ptr(1), Action: ptr(action)}); err != nil {
				t.Fatal(err)
			}
		}
		env.Now.Advance(2 * day)
		rep, err := env.Core.Retention.Run(ctx, env.Tenant.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rep.Policies {
			if p.Count != 1 || len(p.Subjects) != 1 || p.Subjects[0].ID != ann {
				t.Errorf("dry run of %q: %d %+v; want ann alone", p.Name, p.Count, p.Subjects)
			}
		}
		if _, err := env.Core.Retention.Run(ctx, env.Tenant.ID, false); err != nil {
			t.Fatal(err)
		}
		if kind, s := status(t, env, ann); kind != errs.Gone && s.Status != "anonymised" {
			t.Errorf("ann after the run: %v %+v; want anonymised or erased", kind, s)
		}
		for _, email := range []string{"owner@acme.example", "mo@acme.example"} {
			u, err := env.Core.Identity.UserByEmail(ctx, env.Tenant.ID, email)
			if err != nil {
				t.Fatalf("%s after retention: %v", email, err)
			}
			if s, err := env.Core.Subjects.Get(ctx, env.Tenant.ID, u.SubjectID); err != nil || s.Email != email || s.Status != subject.StatusActive {
				t.Errorf("%s's person after retention: %+v %v", email, s, err)
			}
		}
	})
}
