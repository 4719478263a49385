package mail_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/subject"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// TestOutbox: a queued message is stored sealed, delivered once, and a
// permanent SMTP refusal gives it up without retrying.
func TestOutbox(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		s, err := env.Core.Subjects.Create(ctx, env.Tenant.ID, subject.New{Email: "rcpt@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		key, err := env.Core.Subjects.Key(ctx, env.Tenant.ID, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		queue := func(subj string) {
			t.Helper()
			err := env.Core.DB.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
				return env.Core.Mail.Queue(ctx, tx, key, mail.Message{TenantID: env.Tenant.ID, SubjectID: s.ID, Kind: "test",
					To: "rcpt@example.org", Subject: subj, Text: "secret body text"})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		queue("first")
		m := env.Mail.Wait(t, "rcpt@example.org", "first", 10*time.Second)
		if !strings.Contains(m.Text, "secret body text") {
			t.Errorf("body %q", m.Text)
		}
		for _, v := range sqldbtest.Strings(t, env.Core.DB, "SELECT message_ct FROM mail_outbox") {
			if strings.Contains(v, "rcpt@example.org") || strings.Contains(v, "secret body") {
				t.Error("outbox holds the message in clear")
			}
		}
		env.Mail.Refuse(550)
		queue("second")
		deadline := time.Now().Add(10 * time.Second)
		var st mail.Status
		for time.Now().Before(deadline) {
			if st, err = env.Core.Mail.Counts(ctx, env.Tenant.ID); err != nil {
				t.Fatal(err)
			}
			if st.Failed == 1 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st != (mail.Status{Sent: 1, Failed: 1}) {
			t.Errorf("outbox %+v; want 1 sent, 1 given up after a permanent refusal", st)
		}
		if got := len(env.Mail.All()); got != 1 {
			t.Errorf("%d mails delivered; want 1", got)
		}
		reasons := sqldbtest.Strings(t, env.Core.DB, "SELECT last_error FROM mail_outbox WHERE failed_at <> 0")
		if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "smtp: 550") || strings.Contains(reasons[0], "@") {
			t.Errorf("failure recorded as %q; want the SMTP code, no address", reasons)
		}
	})
}
