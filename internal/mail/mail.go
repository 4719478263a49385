// Package mail queues outgoing email in the database and delivers it over
// SMTP, retrying until the server accepts it or refuses it for good.
//
// A message is queued inside the transaction that decides to send it, so
// nothing acknowledged is lost and nothing is sent for a change that was
// rolled back. Its recipient, subject line and body are sealed under the
// recipient's subject key: the outbox holds nothing personal in clear, and
// the mail of an erased person can no longer be read or sent.
package mail

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	gomail "github.com/wneessen/go-mail"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Message is one email to one data subject.
type Message struct {
	ID        string `json:"-"` // optional: the caller's id for this mail (a UUID); made when empty
	TenantID  string `json:"-"`
	SubjectID string `json:"-"` // the recipient, whose key seals the message
	Kind      string `json:"-"` // what it is: invitation, password-reset, account-locked…
	To        string `json:"to"`
	Subject   string `json:"subject"`
	Text      string `json:"text"`
}

// Config is how mail leaves: an SMTP URL and the From address.
//
//	smtp://user:password@host:587            STARTTLS required
//	smtps://user:password@host:465           TLS from the start
//	smtp://host:25?tls=none                  no TLS (only for a relay on localhost)
type Config struct {
	URL  string
	From string
}

// maxAttempts and the backoff: retried for about a day, then given up.
const maxAttempts = 10

func backoff(attempt int) time.Duration {
	d := time.Minute << min(attempt, 9)
	return min(d, 6*time.Hour)
}

// Outbox queues and delivers mail.
type Outbox struct {
	db     *sqldb.DB
	keys   *keyring.Keyring
	cfg    Config
	client func() (*gomail.Client, error)
	logger *slog.Logger
	now    func() time.Time
	wake   chan struct{}
	mu     sync.Mutex // one delivery pass at a time in this process
	fb     Feedback
}

// Feedback hears, per recipient, that an address works or does not: a
// message accepted by the SMTP server, or refused for good (a 5xx reply,
// a hard bounce).
type Feedback interface {
	Delivered(ctx context.Context, tenantID, subjectID string) error
	Bounced(ctx context.Context, tenantID, subjectID, mailID, reason string) error
}

// SetFeedback makes the outbox report deliveries and hard bounces to fb.
// Call it before Run.
func (o *Outbox) SetFeedback(fb Feedback) { o.fb = fb }

// New returns an outbox. With no URL configured, mail waits in the outbox
// until one is.
func New(db *sqldb.DB, keys *keyring.Keyring, cfg Config, logger *slog.Logger, now func() time.Time) (*Outbox, error) {
	o := &Outbox{db: db, keys: keys, cfg: cfg, logger: logger, now: now, wake: make(chan struct{}, 1)}
	if cfg.From == "" {
		o.cfg.From = "Custodia <custodia@localhost>"
	}
	if cfg.URL == "" {
		return o, nil
	}
	client, err := clientFor(cfg.URL)
	if err != nil {
		return nil, err
	}
	o.client = client
	return o, nil
}

// clientFor parses an SMTP URL into a client factory.
func clientFor(raw string) (func() (*gomail.Client, error), error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") {
		return nil, errs.Field("smtp-url", "want smtp://[user:password@]host[:port][?tls=none] or smtps://…")
	}
	opts := []gomail.Option{gomail.WithTimeout(30 * time.Second)}
	port := 587
	if u.Scheme == "smtps" {
		port = 465
		opts = append(opts, gomail.WithSSL())
	} else {
		switch u.Query().Get("tls") {
		case "", "required":
			opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
		case "none":
			opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
		default:
			return nil, errs.Field("smtp-url", "tls= must be required or none")
		}
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, errs.Field("smtp-url", "bad port %q", p)
		}
	}
	opts = append(opts, gomail.WithPort(port))
	if u.User != nil {
		pw, _ := u.User.Password()
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(u.User.Username()), gomail.WithPassword(pw))
	}
	host := u.Hostname()
	return func() (*gomail.Client, error) { return gomail.NewClient(host, opts...) }, nil
}

// Alert sends a message to the operator at once, straight over SMTP: it
// goes when the database does not (a failing backup may be the
// database's), so nothing of it is queued or retried — the caller logs a
// failure. It holds no personal data.
func (o *Outbox) Alert(ctx context.Context, to, subject, text string) error {
	if o.client == nil {
		return errors.New("no SMTP server is configured (CUSTODIA_SMTP_URL)")
	}
	msg := gomail.NewMsg()
	if err := msg.From(o.cfg.From); err != nil {
		return err
	}
	if err := msg.To(to); err != nil {
		return err
	}
	msg.Subject(subject)
	msg.SetBodyString(gomail.TypeTextPlain, text)
	client, err := o.client()
	if err != nil {
		return err
	}
	return client.DialAndSendWithContext(ctx, msg)
}

// Configured reports whether mail can leave.
func (o *Outbox) Configured() bool { return o.client != nil }

// Queue adds m to the outbox inside tx, sealed under key (the recipient's
// subject key).
func (o *Outbox) Queue(ctx context.Context, tx *sqldb.Tx, key *keyring.DataKey, m Message) error {
	if m.To == "" || m.Subject == "" || m.Kind == "" {
		return fmt.Errorf("mail: message without recipient, subject or kind")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if m.ID != "" {
		if id, err = uuid.Parse(m.ID); err != nil {
			return fmt.Errorf("mail: message id: %w", err)
		}
	}
	pt, err := json.Marshal(m)
	if err != nil {
		return err
	}
	now := o.now().UnixMicro()
	_, err = tx.Exec(ctx, `INSERT INTO mail_outbox (tenant_id, id, subject_id, kind, message_ct, next_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, m.TenantID, id.String(), m.SubjectID, m.Kind,
		key.Seal("mail_outbox", "message_ct", id.String(), pt), now, now)
	if err == nil {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// Woken receives when a message is queued: the delivery job (Deliver,
// on every node, every 30 s otherwise) listens to it.
func (o *Outbox) Woken() <-chan struct{} { return o.wake }

// lease is how long a node owns a message it is sending.
const lease = 5 * time.Minute

// Deliver sends every due message once and reports how many left.
func (o *Outbox) Deliver(ctx context.Context) (int, error) {
	if o.client == nil {
		return 0, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	sent := 0
	for {
		batch, err := o.claim(ctx, 50)
		if err != nil || len(batch) == 0 {
			return sent, err
		}
		for _, d := range batch {
			if err := o.send(ctx, d); err != nil {
				return sent, err
			}
			if d.sent {
				sent++
			}
		}
	}
}

type due struct {
	tenantID, id, subjectID, kind string
	ct                            []byte
	attempts                      int
	sent                          bool
}

// claim leases up to n due messages, so that another node does not send
// them too.
func (o *Outbox) claim(ctx context.Context, n int) ([]*due, error) {
	now := o.now().UnixMicro()
	var out []*due
	err := o.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `SELECT tenant_id, id, subject_id, kind, message_ct, attempts FROM mail_outbox
			WHERE sent_at = 0 AND failed_at = 0 AND next_at <= ? ORDER BY next_at LIMIT ?`+o.db.ForUpdate(), now, n)
		if err != nil {
			return err
		}
		for rows.Next() {
			d := &due{}
			if err := rows.Scan(&d.tenantID, &d.id, &d.subjectID, &d.kind, &d.ct, &d.attempts); err != nil {
				rows.Close()
				return err
			}
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, d := range out {
			if _, err := tx.Exec(ctx, "UPDATE mail_outbox SET next_at = ? WHERE tenant_id = ? AND id = ?",
				now+lease.Microseconds(), d.tenantID, d.id); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// send delivers one claimed message and records the outcome. Errors
// returned are the database's; delivery failures are recorded instead.
func (o *Outbox) send(ctx context.Context, d *due) error {
	key, err := o.keys.SubjectKey(ctx, o.db.Read(), d.tenantID, d.subjectID)
	if errs.Is(err, errs.Gone) {
		return o.finish(ctx, d, false, "recipient erased")
	}
	if err != nil {
		return err
	}
	pt, err := key.Open("mail_outbox", "message_ct", d.id, d.ct)
	if err != nil {
		return o.finish(ctx, d, false, "message does not decrypt")
	}
	var m Message
	if err := json.Unmarshal(pt, &m); err != nil {
		return o.finish(ctx, d, false, "message does not decode")
	}
	msg := gomail.NewMsg()
	if err := msg.From(o.cfg.From); err != nil {
		return o.finish(ctx, d, false, "bad From address")
	}
	if err := msg.To(m.To); err != nil {
		return o.finish(ctx, d, false, "bad recipient address")
	}
	msg.Subject(m.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	msg.SetMessageIDWithValue(d.id + "@custodia")
	client, err := o.client()
	if err != nil {
		return o.finish(ctx, d, false, "smtp configuration")
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if err == nil {
		d.sent = true
		if err := o.finish(ctx, d, true, ""); err != nil {
			return err
		}
		if o.fb != nil {
			o.feedback(d, o.fb.Delivered(ctx, d.tenantID, d.subjectID))
		}
		return nil
	}
	// SMTP errors may quote the recipient: keep the status code only.
	reason := "smtp: connection or protocol error"
	permanent := false
	var se *gomail.SendError
	if errors.As(err, &se) {
		reason = fmt.Sprintf("smtp: %d %s", se.ErrorCode(), se.EnhancedStatusCode())
		permanent = !se.IsTemp() && se.ErrorCode() >= 500
	}
	if permanent || d.attempts+1 >= maxAttempts {
		if err := o.finish(ctx, d, false, reason); err != nil {
			return err
		}
		if permanent && o.fb != nil {
			o.feedback(d, o.fb.Bounced(ctx, d.tenantID, d.subjectID, d.id, reason))
		}
		return nil
	}
	return o.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE mail_outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE tenant_id = ? AND id = ?",
			o.now().Add(backoff(d.attempts)).UnixMicro(), reason, d.tenantID, d.id)
		return err
	})
}

// feedback logs a failure to report on d: the message's own outcome is
// recorded already and delivery goes on.
func (o *Outbox) feedback(d *due, err error) {
	if err != nil && !errs.Is(err, errs.NotFound) && !errs.Is(err, errs.Gone) {
		o.logger.Error("mail feedback", "tenant", d.tenantID, "mail_id", d.id, "error", err.Error())
	}
}

// finish marks a message sent, or failed for good.
func (o *Outbox) finish(ctx context.Context, d *due, sent bool, reason string) error {
	col := "failed_at"
	if sent {
		col = "sent_at"
	} else {
		o.logger.Warn("mail given up", "tenant", d.tenantID, "mail_id", d.id, "kind", d.kind, "reason", reason)
	}
	return o.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE mail_outbox SET "+col+" = ?, attempts = attempts + 1, last_error = ? WHERE tenant_id = ? AND id = ?",
			o.now().UnixMicro(), reason, d.tenantID, d.id)
		return err
	})
}

// Status counts a tenant's mail by state (for tests and the console).
type Status struct {
	Waiting, Sent, Failed int
}

// Counts returns the outbox's state for a tenant.
func (o *Outbox) Counts(ctx context.Context, tenantID string) (Status, error) {
	var s Status
	err := o.db.Read().QueryRow(ctx, `SELECT
			COALESCE(SUM(CASE WHEN sent_at = 0 AND failed_at = 0 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN sent_at <> 0 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN failed_at <> 0 THEN 1 ELSE 0 END), 0)
		FROM mail_outbox WHERE tenant_id = ?`, tenantID).Scan(&s.Waiting, &s.Sent, &s.Failed)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	return s, err
}

// ForgetSubject deletes, inside tx, the mail waiting for a subject who is
// being erased or anonymised (its text is sealed under their key, which
// goes too), and answers how many.
func (o *Outbox) ForgetSubject(ctx context.Context, tx *sqldb.Tx, tenantID, subjectID string) (int, error) {
	res, err := tx.Exec(ctx, "DELETE FROM mail_outbox WHERE tenant_id = ? AND subject_id = ?", tenantID, subjectID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
