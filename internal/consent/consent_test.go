package consent_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// purpose adds a consent-based purpose with key whose consent lasts days
// (0: until withdrawn).
func purpose(t *testing.T, env *coretest.Env, key string, days int) register.Purpose {
	t.Helper()
	p, err := env.Core.Register.Create(context.Background(), env.Tenant.ID, register.New{NoticeText: "We send " + key + " news.",
		Purpose: register.Purpose{Key: key, Name: strings.ToUpper(key), LegalBasis: register.Consent,
			DataCategories: []string{"user.contact.email"}, Recipients: []string{"Mailer Ltd"}, ConsentValidDays: days}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func person(t *testing.T, env *coretest.Env, email string) string {
	t.Helper()
	s, err := env.Core.Subjects.Create(context.Background(), env.Tenant.ID, subject.New{Email: email})
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func record(t *testing.T, env *coretest.Env, subjectID, purposeKey, action string) consent.Recorded {
	t.Helper()
	r, err := env.Core.Consent.Record(context.Background(), env.Tenant.ID, subjectID, consent.Input{Purpose: purposeKey,
		Action: action, Method: "web_form", Source: "signup form", IP: "198.51.100.23"})
	if err != nil {
		t.Fatalf("%s %s: %v", action, purposeKey, err)
	}
	return r
}

// TestLedgerIsAppendOnlyAndChained: events chain; the database refuses to
// change one; an event replaced by an altered copy, and a history cut
// short, are both found by Verify.
func TestLedgerIsAppendOnlyAndChained(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		cs := env.Core.Consent
		purpose(t, env, "news", 0)
		ann := person(t, env, "ann@example.org")
		g := record(t, env, ann, "news", consent.Grant)
		record(t, env, ann, "news", consent.Withdraw)
		last := record(t, env, ann, "news", consent.Grant)
		if g.Seq != 1 || last.Seq != 3 || g.IP != "198.51.100.0/24" || g.NoticeHash != register.NoticeHash("We send news news.") {
			t.Errorf("events: %+v … %+v", g.Event, last.Event)
		}
		if v, err := cs.Verify(ctx, env.Tenant.ID, ann); err != nil || !v.OK || v.Events != 3 || v.Head != last.Hash {
			t.Fatalf("verify: %+v %v", v, err)
		}
		if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE consent_events SET action = 'grant' WHERE tenant_id = ? AND subject_id = ? AND seq = 2", env.Tenant.ID, ann)
			return err
		}); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("UPDATE of the ledger: %v; want refused", err)
		}

		// Swap event 2 for a copy that says "grant" instead of "withdraw".
		exec := func(q string, args ...any) {
			t.Helper()
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { _, err := tx.Exec(ctx, q, args...); return err }); err != nil {
				t.Fatal(err)
			}
		}
		exec(`CREATE TABLE saved AS SELECT * FROM consent_events WHERE tenant_id = ? AND subject_id = ?`, env.Tenant.ID, ann)
		exec("DELETE FROM consent_events WHERE tenant_id = ? AND subject_id = ? AND seq = 2", env.Tenant.ID, ann)
		exec(`INSERT INTO consent_events SELECT tenant_id, id, subject_id, seq, purpose_id, purpose_key, notice_version, notice_hash,
			'grant', method, origin_ct, created_at, valid_until, prev_hash, hash, receipt FROM saved WHERE seq = 2`)
		if v, err := cs.Verify(ctx, env.Tenant.ID, ann); err != nil || v.OK || !strings.Contains(v.Problem, "event 2: altered") {
			t.Errorf("altered event: %+v %v", v, err)
		}
		// Put it back, then cut the history short.
		exec("DELETE FROM consent_events WHERE tenant_id = ? AND subject_id = ? AND seq = 2", env.Tenant.ID, ann)
		exec("INSERT INTO consent_events SELECT * FROM saved WHERE seq = 2")
		if v, _ := cs.Verify(ctx, env.Tenant.ID, ann); !v.OK {
			t.Fatalf("restored ledger: %+v", v)
		}
		exec("DELETE FROM consent_events WHERE tenant_id = ? AND subject_id = ? AND seq = 3", env.Tenant.ID, ann)
		if v, err := cs.Verify(ctx, env.Tenant.ID, ann); err != nil || v.OK || !strings.Contains(v.Problem, "event 3") {
			t.Errorf("truncated ledger: %+v %v", v, err)
		}
		// Removing a middle event breaks the chain.
		exec("DELETE FROM consent_events WHERE tenant_id = ? AND subject_id = ? AND seq = 2", env.Tenant.ID, ann)
		exec("INSERT INTO consent_events SELECT * FROM saved WHERE seq = 3")
		if v, err := cs.Verify(ctx, env.Tenant.ID, ann); err != nil || v.OK || !strings.Contains(v.Problem, "seq 3 where 2 was due") {
			t.Errorf("ledger without its middle: %+v %v", v, err)
		}
	})
}

// TestConcurrentAppends: parallel events for one person get consecutive
// places in one unbroken chain.
func TestConcurrentAppends(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		purpose(t, env, "news", 0)
		bo := person(t, env, "bo@example.org")
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				action := []string{consent.Grant, consent.Withdraw}[i%2]
				if _, err := env.Core.Consent.Record(context.Background(), env.Tenant.ID, bo,
					consent.Input{Purpose: "news", Action: action, Method: "api"}); err != nil {
					t.Errorf("append %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if v, err := env.Core.Consent.Verify(context.Background(), env.Tenant.ID, bo); err != nil || !v.OK || v.Events != 10 {
			t.Errorf("after parallel appends: %+v %v", v, err)
		}
	})
}

// TestReceipts: each event's receipt verifies offline with the published
// key and says what happened; an altered receipt does not verify.
func TestReceipts(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	purpose(t, env, "news", 365)
	cy := person(t, env, "cy@example.org")
	r := record(t, env, cy, "news", consent.Grant)
	keys, err := env.Core.Consent.Keys(ctx, "acme")
	if err != nil || len(keys.Keys) != 1 || keys.Keys[0].Crv != "Ed25519" {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	c, err := consent.VerifyReceipt(r.Receipt, keys)
	if err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	if c.Version != consent.KantaraVersion || c.ConsentReceiptID != r.ID || c.PIIPrincipalID != cy || c.CollectionMethod != "web_form" ||
		c.Custodia.Action != consent.Grant || c.Custodia.NoticeHash != r.NoticeHash || c.Custodia.EventHash != r.Hash ||
		c.PIIControllers[0].PIIController != "ACME Ltd" || c.Custodia.ValidUntil == 0 || !c.Services[0].Purposes[0].ThirdPartyDisclosure {
		t.Errorf("claims: %+v", c)
	}
	if strings.Contains(r.Receipt, "cy@example.org") || strings.Contains(r.Receipt, "198.51.100") {
		t.Error("the receipt names the person")
	}
	again, err := env.Core.Consent.Receipt(ctx, env.Tenant.ID, cy, r.ID)
	if err != nil || again != r.Receipt {
		t.Errorf("stored receipt: %v", err)
	}
	parts := strings.Split(r.Receipt, ".")
	payload := []byte(parts[1])
	payload[10] ^= 1 // flip one bit of one base64 character
	for name, bad := range map[string]string{
		"altered payload":   parts[0] + "." + string(payload) + "." + parts[2],
		"swapped signature": parts[0] + "." + parts[1] + "." + strings.Split(record(t, env, cy, "news", consent.Withdraw).Receipt, ".")[2],
		"truncated":         parts[0] + "." + parts[1],
	} {
		if _, err := consent.VerifyReceipt(bad, keys); err == nil {
			t.Errorf("%s receipt verified", name)
		}
	}
	other, _ := env.AddTenant(t, "globex", "owner@globex.example")
	otherKeys, err := env.Core.Consent.Keys(ctx, other.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consent.VerifyReceipt(r.Receipt, otherKeys); err == nil {
		t.Error("another tenant's key verified the receipt")
	}
}

// TestConsentMissing: the contacts without valid consent, for a purpose
// and for any, through grant → withdraw → re-grant → expiry.
func TestConsentMissing(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 30)
		purpose(t, env, "events", 0)
		ann, bo, cy := person(t, env, "ann@example.org"), person(t, env, "bo@example.org"), person(t, env, "cy@example.org")
		ours := []string{ann, bo, cy}
		missing := func(key string) []string {
			t.Helper()
			w, err := env.Core.Consent.MissingFilter(ctx, env.Tenant.ID, key)
			if err != nil {
				t.Fatal(err)
			}
			subs, _, err := env.Core.Subjects.List(ctx, env.Tenant.ID, subject.ListOptions{Where: w, Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, s := range subs {
				if slices.Contains(ours, s.ID) {
					out = append(out, s.ID)
				}
			}
			return out
		}
		want := func(step, key string, ids ...string) {
			t.Helper()
			if got := missing(key); !slices.Equal(got, ids) {
				t.Errorf("%s: missing %q = %v; want %v", step, key, got, ids)
			}
		}
		want("start", "news", ann, bo, cy)
		want("start", "", ann, bo, cy)
		record(t, env, ann, "news", consent.Grant)
		want("granted", "news", bo, cy)
		record(t, env, ann, "news", consent.Withdraw)
		want("withdrawn", "news", ann, bo, cy)
		record(t, env, ann, "news", consent.Grant)
		want("granted again", "news", bo, cy)
		record(t, env, bo, "events", consent.Grant)
		want("other purpose", "news", bo, cy)
		want("other purpose", "", cy)
		env.Now.Advance(30*24*time.Hour - time.Minute)
		want("a minute before expiry", "news", bo, cy)
		env.Now.Advance(2 * time.Minute)
		want("expired", "news", ann, bo, cy)
		want("expired, any purpose", "", ann, cy)
		l, err := env.Core.Consent.Ledger(ctx, env.Tenant.ID, ann)
		if err != nil || len(l.State) != 1 || l.State[0].Status != consent.Expired || len(l.History) != 3 {
			t.Errorf("ledger after expiry: %+v %v", l, err)
		}
		if _, err := env.Core.Consent.MissingFilter(ctx, env.Tenant.ID, "nope"); !errs.Is(err, errs.Invalid) {
			t.Errorf("unknown purpose: %v", err)
		}
	})
}

// TestRecordRefusals: bad input is refused by field and leaves no trace.
func TestRecordRefusals(t *testing.T) {
	env := coretest.New(t, "")
	ctx := context.Background()
	purpose(t, env, "news", 0)
	if _, err := env.Core.Register.Create(ctx, env.Tenant.ID, register.New{Purpose: register.Purpose{Key: "billing", Name: "Billing",
		LegalBasis: register.Contract, DataCategories: []string{"user.name"}}}); err != nil {
		t.Fatal(err)
	}
	dee := person(t, env, "dee@example.org")
	for name, c := range map[string]struct {
		in    consent.Input
		field string
	}{
		"no purpose":        {consent.Input{Action: consent.Grant, Method: "api"}, "purpose"},
		"unknown purpose":   {consent.Input{Purpose: "nope", Action: consent.Grant, Method: "api"}, "purpose"},
		"not consent-based": {consent.Input{Purpose: "billing", Action: consent.Grant, Method: "api"}, "purpose"},
		"bad action":        {consent.Input{Purpose: "news", Action: "maybe", Method: "api"}, "action"},
		"bad method":        {consent.Input{Purpose: "news", Action: consent.Grant, Method: "telepathy"}, "method"},
		"bad ip":            {consent.Input{Purpose: "news", Action: consent.Grant, Method: "api", IP: "home"}, "ip"},
		"unknown notice":    {consent.Input{Purpose: "news", Action: consent.Grant, Method: "api", NoticeVersion: 7}, "notice_version"},
		"source too long":   {consent.Input{Purpose: "news", Action: consent.Grant, Method: "api", Source: strings.Repeat("x", 201)}, "source"},
	} {
		_, err := env.Core.Consent.Record(ctx, env.Tenant.ID, dee, c.in)
		if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != c.field {
			t.Errorf("%s: %v; want a problem with field %s", name, err, c.field)
		}
	}
	if _, err := env.Core.Consent.Record(ctx, env.Tenant.ID, "01a00000-0000-7000-8000-000000000000",
		consent.Input{Purpose: "news", Action: consent.Grant, Method: "api"}); !errs.Is(err, errs.NotFound) {
		t.Errorf("unknown subject: %v", err)
	}
	if l, err := env.Core.Consent.Ledger(ctx, env.Tenant.ID, dee); err != nil || len(l.History) != 0 {
		t.Errorf("refused events were stored: %+v %v", l, err)
	}
	// An earlier notice version can be named; its hash is recorded.
	first, _ := env.Core.Register.Get(ctx, env.Tenant.ID, "news")
	if _, err := env.Core.Register.AddNotice(ctx, env.Tenant.ID, "news", "We send news, now weekly."); err != nil {
		t.Fatal(err)
	}
	r, err := env.Core.Consent.Record(ctx, env.Tenant.ID, dee, consent.Input{Purpose: "news", Action: consent.Grant, Method: "paper", NoticeVersion: 1})
	if err != nil || r.NoticeVersion != 1 || r.NoticeHash != first.Notice.SHA256 {
		t.Errorf("grant for notice 1: %+v %v", r.Event, err)
	}
}

var campaignLink = regexp.MustCompile(`/privacy/acme/consent/([A-Za-z0-9_-]{43})\b`)

// TestCampaignLinkAnswersOnce: ten answers released together on one link:
// exactly one is recorded, whatever order the database sees them in.
func TestCampaignLinkAnswersOnce(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 0)
		ann := person(t, env, "ann@example.org")
		c, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "refresh", Purpose: "news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{ann}})
		if err != nil || c.Counts.Recipients != 1 {
			t.Fatalf("start: %+v %v", c, err)
		}
		m := campaignLink.FindStringSubmatch(env.Mail.Wait(t, "ann@example.org", "consent", 10*time.Second).Text)
		if m == nil {
			t.Fatal("no link in the mail")
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 10 {
			wg.Go(func() {
				<-start
				_, err := env.Core.Consent.AnswerLink(ctx, "acme", m[1], consent.AnswerGrant, 1, "192.0.2.1", "test")
				if err != nil && !errs.Is(err, errs.Gone) {
					t.Errorf("answer: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins++
				}
			})
		}
		close(start)
		wg.Wait()
		l, err := env.Core.Consent.Ledger(ctx, env.Tenant.ID, ann)
		if err != nil || wins != 1 || len(l.History) != 1 {
			t.Fatalf("%d answers won, ledger %+v %v", wins, l.History, err)
		}
	})
}

// TestCampaignsLeaveStaffOut: staff are not contacts — no campaign
// audience has a person with a user account, not even one listed by id.
func TestCampaignsLeaveStaffOut(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 0)
		purpose(t, env, "events", 0)
		ann := person(t, env, "ann@example.org")
		mo := env.AddUser(t, "mo@acme.example", "member", coretest.Password)
		owner, err := env.Core.Identity.UserByEmail(ctx, env.Tenant.ID, "owner@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []consent.CampaignInput{
			{Name: "missing", Purpose: "news", Audience: consent.AudienceMissing},
			{Name: "listed", Purpose: "events", Audience: consent.AudienceSubjects, SubjectIDs: []string{owner.SubjectID, ann, mo.SubjectID}},
		} {
			c, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, in)
			if err != nil || c.Counts.Recipients != 1 {
				t.Errorf("campaign %q: %+v %v; want ann alone", in.Name, c.Counts, err)
			}
		}
		env.Mail.WaitCount(t, "ann@example.org", "consent", 2, 10*time.Second)
		for _, email := range []string{"owner@acme.example", "mo@acme.example"} {
			if got := env.Mail.To(email, "consent"); len(got) != 0 {
				t.Errorf("%s was sent a consent campaign: %v", email, got[0].Subject)
			}
		}
	})
}

// TestTamperedStateIsNotBelieved: someone who writes the database flips a
// withdrawn consent's state row back to "grant" — in place, by replaying
// the row as it was when granted, or by clearing its MAC — and the
// processing check refuses to say "allowed", names the tampering and
// audits it; withdrawing again still works. Dropping the withdrawal from
// the ledger — and from the audit trail too — fails the ledger's verify.
func TestTamperedStateIsNotBelieved(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		exec := func(q string, args ...any) {
			t.Helper()
			if err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { _, err := tx.Exec(ctx, q, args...); return err }); err != nil {
				t.Fatal(err)
			}
		}
		purpose(t, env, "news", 0)
		ann := person(t, env, "ann@example.org")
		record(t, env, ann, "news", consent.Grant)
		exec("CREATE TABLE granted_state AS SELECT * FROM consent_state WHERE tenant_id = ? AND subject_id = ?", tid, ann)
		w := record(t, env, ann, "news", consent.Withdraw)
		exec("CREATE TABLE withdrawn_state AS SELECT * FROM consent_state WHERE tenant_id = ? AND subject_id = ?", tid, ann)
		allowed := func() (bool, []string) {
			t.Helper()
			p, err := env.Core.Rights.Processing(ctx, tid, ann, "news")
			if err != nil {
				t.Fatal(err)
			}
			return p.Allowed, p.Reasons
		}
		if ok, reasons := allowed(); ok || !slices.Equal(reasons, []string{"no_consent"}) {
			t.Fatalf("after the withdrawal: %v %v", ok, reasons)
		}
		restore := func() {
			t.Helper()
			exec("DELETE FROM consent_state WHERE tenant_id = ? AND subject_id = ?", tid, ann)
			exec("INSERT INTO consent_state SELECT * FROM withdrawn_state")
		}
		for name, tamper := range map[string]func(){
			"flipped in place": func() {
				exec("UPDATE consent_state SET action = 'grant' WHERE tenant_id = ? AND subject_id = ?", tid, ann)
			},
			"the granted row replayed": func() {
				exec("DELETE FROM consent_state WHERE tenant_id = ? AND subject_id = ?", tid, ann)
				exec("INSERT INTO consent_state SELECT * FROM granted_state")
			},
			"flipped, its MAC cleared": func() {
				exec("UPDATE consent_state SET action = 'grant', mac = ? WHERE tenant_id = ? AND subject_id = ?", []byte{}, tid, ann)
			},
		} {
			tamper()
			if ok, reasons := allowed(); ok || !slices.Equal(reasons, []string{"consent_record_tampered"}) {
				t.Errorf("%s: allowed %v %v; want refused as tampered", name, ok, reasons)
			}
			if v, err := env.Core.Consent.Verify(ctx, tid, ann); err != nil || v.OK {
				t.Errorf("%s: ledger verify %+v %v; want failing", name, v, err)
			}
			restore()
		}
		// A row from before MACs, as it was: believed, checked against the ledger.
		exec("UPDATE consent_state SET mac = ? WHERE tenant_id = ? AND subject_id = ?", []byte{}, tid, ann)
		if ok, reasons := allowed(); ok || !slices.Equal(reasons, []string{"no_consent"}) {
			t.Errorf("an untampered row without a MAC: %v %v", ok, reasons)
		}
		es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, tid, audit.Filter{Action: "consent.tampered", Limit: 10})
		if err != nil || len(es) < 3 || es[0].Outcome != audit.Failure {
			t.Errorf("tampering audited: %d events %v", len(es), err)
		}

		// The withdrawal dropped from the ledger, the state replayed: the
		// audit trail still has it. Dropped from the trail too: the trail's
		// own verification fails, and with it the ledger's.
		exec("DELETE FROM consent_events WHERE tenant_id = ? AND id = ?", tid, w.ID)
		exec("DELETE FROM consent_state WHERE tenant_id = ? AND subject_id = ?", tid, ann)
		exec("INSERT INTO consent_state SELECT * FROM granted_state")
		if v, err := env.Core.Consent.Verify(ctx, tid, ann); err != nil || v.OK || !strings.Contains(v.Problem, "event 2") {
			t.Errorf("withdrawal dropped: %+v %v", v, err)
		}
		exec("DELETE FROM audit_events WHERE tenant_id = ? AND action = 'consent.withdraw'", tid)
		if v, err := env.Core.Consent.Verify(ctx, tid, ann); err != nil || v.OK || !strings.Contains(v.Problem, "audit trail") {
			t.Errorf("withdrawal dropped from the trail too: %+v %v", v, err)
		}
	})
}

// TestCampaignPreview: before a campaign starts, it says whom it would
// reach — and matches what starting it then does: the contacts with an
// address are mailed, one without is skipped, one holding an open link is
// skipped; nothing changes and nothing is mailed by the preview.
func TestCampaignPreview(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 0)
		person(t, env, "ann@example.org")
		bo := person(t, env, "bo@example.org")
		if _, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Phone: "+33123456789"}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "bo first", Purpose: "news",
			Audience: consent.AudienceSubjects, SubjectIDs: []string{bo}}); err != nil {
			t.Fatal(err)
		}
		in := consent.CampaignInput{Name: "all missing", Purpose: "news", Audience: consent.AudienceMissing}
		pv, err := env.Core.Consent.PreviewCampaign(ctx, env.Tenant.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		if pv != (consent.Preview{Audience: 3, Recipients: 1, NoEmail: 1, Pending: 1}) {
			t.Errorf("preview %+v; want 3 in the audience: ann mailed, the phone-only contact and bo (an open link) skipped", pv)
		}
		if n := len(env.Mail.To("ann@example.org", "consent")); n != 0 {
			t.Errorf("the preview mailed ann %d times", n)
		}
		if _, err := env.Core.Consent.PreviewCampaign(ctx, env.Tenant.ID, consent.CampaignInput{Name: "x", Purpose: "news", Audience: "all"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("a bad audience: %v", err)
		}
		c, err := env.Core.Consent.StartCampaign(ctx, env.Tenant.ID, in)
		if err != nil || c.Counts.Recipients != pv.Recipients || c.Counts.NoEmail != pv.NoEmail || c.Counts.Pending != pv.Pending {
			t.Errorf("started %+v, %v; the preview said %+v", c.Counts, err, pv)
		}
	})
}

// TestConsentReport: per consent-based purpose, how many active contacts
// hold a valid consent, an expired one, a withdrawn one, or none; staff
// and other legal bases are left out.
func TestConsentReport(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 30)
		purpose(t, env, "events", 0)
		ann, bo, cy := person(t, env, "ann@example.org"), person(t, env, "bo@example.org"), person(t, env, "cy@example.org")
		person(t, env, "dee@example.org")
		env.AddUser(t, "staff@acme.example", "member", coretest.Password)
		record(t, env, cy, "news", consent.Grant) // will expire
		env.Now.Advance(31 * 24 * time.Hour)
		record(t, env, ann, "news", consent.Grant)
		record(t, env, bo, "news", consent.Grant)
		record(t, env, bo, "news", consent.Withdraw)
		record(t, env, ann, "events", consent.Grant)
		rep, err := env.Core.Consent.Report(ctx, env.Tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint([]consent.PurposeCounts{
			{Purpose: "events", Name: "EVENTS", Valid: 1, NeverAsked: 3},
			{Purpose: "news", Name: "NEWS", Valid: 1, Expired: 1, Withdrawn: 1, NeverAsked: 1},
		})
		if got := fmt.Sprint(rep); got != want {
			t.Errorf("report %s; want %s", got, want)
		}
		states, err := env.Core.Consent.States(ctx, env.Tenant.ID, "news", []string{ann, bo, cy})
		if err != nil || states[ann].Status != consent.Granted || states[bo].Status != consent.Withdrawn || states[cy].Status != consent.Expired {
			t.Errorf("states %+v %v", states, err)
		}
	})
}

// TestHistory: the tenant's consent events newest first, by purpose and
// time, in pages; each page one audit event naming its people; all of it
// as CSV, without the sealed source and network.
func TestHistory(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		purpose(t, env, "news", 0)
		purpose(t, env, "events", 0)
		ann, bo := person(t, env, "ann@example.org"), person(t, env, "bo@example.org")
		first := record(t, env, ann, "news", consent.Grant)
		env.Now.Advance(time.Hour)
		mid := env.Now.Now()
		record(t, env, bo, "news", consent.Grant)
		env.Now.Advance(time.Hour)
		record(t, env, bo, "events", consent.Grant)
		last := record(t, env, bo, "news", consent.Withdraw)
		page := func(f consent.HistoryFilter) []string {
			t.Helper()
			var out []string
			for {
				es, next, err := env.Core.Consent.History(ctx, env.Tenant.ID, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					out = append(out, e.Purpose+":"+e.Action)
				}
				if next == "" {
					return out
				}
				f.Cursor = next
			}
		}
		for name, c := range map[string]struct {
			f    consent.HistoryFilter
			want string
		}{
			"all, by pages of 1": {consent.HistoryFilter{Limit: 1}, "[news:withdraw events:grant news:grant news:grant]"},
			"one purpose":        {consent.HistoryFilter{Purpose: "news"}, "[news:withdraw news:grant news:grant]"},
			"from":               {consent.HistoryFilter{From: mid}, "[news:withdraw events:grant news:grant]"},
			"to":                 {consent.HistoryFilter{To: mid}, "[news:grant]"},
		} {
			if got := fmt.Sprint(page(c.f)); got != c.want {
				t.Errorf("%s: %s; want %s", name, got, c.want)
			}
		}
		if _, _, err := env.Core.Consent.History(ctx, env.Tenant.ID, consent.HistoryFilter{Purpose: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("an unknown purpose: %v", err)
		}
		rd := audit.NewReader(env.Core.DB, env.Core.Keys)
		if es, _, err := rd.Query(ctx, env.Tenant.ID, audit.Filter{SubjectID: ann, Action: "consent.history", Limit: 100}); err != nil || len(es) != 3 {
			t.Errorf("ann's events hold %d history reads (%v); want the 3 that showed her", len(es), err)
		}
		var b bytes.Buffer
		if err := env.Core.Consent.WriteHistoryCSV(ctx, &b, env.Tenant.ID, consent.HistoryFilter{}); err != nil {
			t.Fatal(err)
		}
		raw := b.String()
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil || len(rows) != 5 || rows[1][1] != bo || rows[1][3] != consent.Withdraw || rows[4][10] != first.ID || rows[1][10] != last.ID {
			t.Errorf("csv %v %v", rows, err)
		}
		if strings.Contains(raw, "signup form") || strings.Contains(raw, "198.51.100") {
			t.Error("the csv holds the sealed source or network")
		}
	})
}
