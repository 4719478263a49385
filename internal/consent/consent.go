// Package consent keeps the consent ledger: every grant and withdrawal of
// consent by a data subject for a purpose of the register, as an event
// that is appended and never changed, with the notice version and its
// hash, how and where consent was collected, and a signed receipt.
//
// Each subject's events form a chain (seq from 1; hash = keyed MAC over the
// previous hash and the event), the database refuses UPDATEs of the
// ledger, and every event's seq and hash is also written to the audit
// trail: an edited, removed, reordered or truncated history is detected by
// Verify. The current state per purpose is kept beside the ledger, so that
// the contacts without valid consent are one indexed query. Where consent
// came from (the source, the person's IP truncated to its network) is
// personal data and sealed under the subject's key.
package consent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Actions of a consent event.
const (
	Grant    = "grant"
	Withdraw = "withdraw"
)

// States of consent for a purpose.
const (
	Granted   = "granted"
	Withdrawn = "withdrawn"
	Expired   = "expired"
)

// Methods are the ways consent is collected.
var Methods = []string{"web_form", "api", "import", "email_link", "portal", "paper", "verbal", "request"}

// Input is a consent event to record.
type Input struct {
	Purpose       string // the purpose's key
	Action        string // grant | withdraw
	Method        string // one of Methods
	NoticeVersion int    // the notice the person saw; 0 = the current one
	Source        string // where: "signup form", "spring campaign"…
	IP            string // the person's address as the collector saw it; stored truncated
}

// Event is one entry of the ledger.
type Event struct {
	ID            string     `json:"id"`
	SubjectID     string     `json:"subject_id"`
	Seq           int64      `json:"seq"`
	Purpose       string     `json:"purpose"`
	Action        string     `json:"action"`
	Method        string     `json:"method"`
	NoticeVersion int        `json:"notice_version"`
	NoticeHash    string     `json:"notice_hash"`
	Source        string     `json:"source"`
	IP            string     `json:"ip"` // the network: /24 for IPv4, /48 for IPv6
	CreatedAt     time.Time  `json:"created_at"`
	ValidUntil    *time.Time `json:"valid_until"`
	Hash          string     `json:"hash"`
}

// Recorded is an appended event with its signed receipt.
type Recorded struct {
	Event
	Receipt     string `json:"receipt"`                // a JWS (EdDSA); keys at /privacy/{tenant}/keys
	WithdrawURL string `json:"withdraw_url,omitempty"` // grants: the public page where the person withdraws it
}

// State is where a subject stands for one purpose.
type State struct {
	Purpose       string     `json:"purpose"`
	Status        string     `json:"status"` // granted | withdrawn | expired
	Since         time.Time  `json:"since"`
	ValidUntil    *time.Time `json:"valid_until"`
	NoticeVersion int        `json:"notice_version"`
	EventID       string     `json:"event_id"`
}

// Ledger is a subject's consent: the state per purpose and every event.
type Ledger struct {
	State   []State `json:"state"`
	History []Event `json:"history"`
}

// Service keeps the ledger.
type Service struct {
	db       *sqldb.DB
	keys     *keyring.Keyring
	log      *audit.Log
	audit    *audit.Reader
	subjects *subject.Service
	register *register.Service
	tenants  *tenant.Service
	mail     *mail.Outbox
	issuer   string // public base URL
	now      func() time.Time
}

// Deps are what a Service is built from.
type Deps struct {
	DB       *sqldb.DB
	Keys     *keyring.Keyring
	Log      *audit.Log
	Subjects *subject.Service
	Register *register.Service
	Tenants  *tenant.Service
	Mail     *mail.Outbox
	Issuer   string // public base URL, e.g. https://custodia.example.org
	Now      func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	return &Service{db: d.DB, keys: d.Keys, log: d.Log, audit: audit.NewReader(d.DB, d.Keys), subjects: d.Subjects,
		register: d.Register, tenants: d.Tenants, mail: d.Mail, issuer: d.Issuer, now: d.Now}
}

// TruncateIP keeps the network of an address: /24 of IPv4, /48 of IPv6.
// It answers "" for anything that is not an address.
func TruncateIP(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// origin is the sealed part of an event.
type origin struct {
	Source string `json:"source"`
	IP     string `json:"ip"`
}

func genesis(tenantID, subjectID string) []byte {
	h := sha256.Sum256([]byte("custodia consent ledger " + tenantID + "/" + subjectID))
	return h[:]
}

// chainMAC is the hash of an event: a MAC under a tenant key over the
// previous hash and every field of the event, the sealed ones in clear.
func (s *Service) chainMAC(ctx context.Context, q sqldb.Q, tenantID string, prev []byte, e Event) ([]byte, error) {
	until := int64(0)
	if e.ValidUntil != nil {
		until = e.ValidUntil.UnixMicro()
	}
	return s.keys.MAC(ctx, q, tenantID, "consent-chain", hex.EncodeToString(prev), e.ID, e.SubjectID, strconv.FormatInt(e.Seq, 10),
		e.Purpose, strconv.Itoa(e.NoticeVersion), e.NoticeHash, e.Action, e.Method, e.Source, e.IP,
		strconv.FormatInt(e.CreatedAt.UnixMicro(), 10), strconv.FormatInt(until, 10))
}

// stateRow is a consent_state row with what it is checked against: the
// hash and position of the ledger event it names, and the position of the
// purpose's last event.
type stateRow struct {
	purposeID, action, eventID string
	at, until                  int64
	mac, eventHash             []byte
	eventSeq, lastSeq          int64
}

// stateMAC binds a state row to the ledger event it names, under the
// tenant's key: flipping its action, its validity or the event it points
// to breaks it.
func (s *Service) stateMAC(ctx context.Context, q sqldb.Q, tenantID, subjectID string, r stateRow) ([]byte, error) {
	return s.keys.MAC(ctx, q, tenantID, "consent-state", subjectID, r.purposeID, r.action, r.eventID,
		strconv.FormatInt(r.at, 10), strconv.FormatInt(r.until, 10), hex.EncodeToString(r.eventHash))
}

// checkState answers what is wrong with a state row, "" when nothing: it
// must name the purpose's last ledger event and carry a valid MAC. A row
// from before MACs existed (none) must instead agree with that event,
// whose own chain MAC is checked.
func (s *Service) checkState(ctx context.Context, tenantID, subjectID string, r stateRow) (string, error) {
	switch {
	case len(r.eventHash) == 0:
		return "the state names a ledger event that does not exist", nil
	case r.eventSeq != r.lastSeq:
		return fmt.Sprintf("the state names ledger event %d; the purpose's last is %d", r.eventSeq, r.lastSeq), nil
	case len(r.mac) > 0:
		want, err := s.stateMAC(ctx, s.db.Read(), tenantID, subjectID, r)
		if err != nil {
			return "", err
		}
		if !hmac.Equal(want, r.mac) {
			return "the state's MAC does not verify (altered)", nil
		}
		return "", nil
	}
	es, prevs, err := s.events(ctx, tenantID, subjectID)
	if err != nil {
		return "", err
	}
	for i, e := range es {
		if e.ID != r.eventID {
			continue
		}
		h, err := s.chainMAC(ctx, s.db.Read(), tenantID, prevs[i], e)
		if err != nil {
			return "", err
		}
		until := int64(0)
		if e.ValidUntil != nil {
			until = e.ValidUntil.UnixMicro()
		}
		if hex.EncodeToString(h) != e.Hash || e.Action != r.action || e.CreatedAt.UnixMicro() != r.at || until != r.until {
			return "the state differs from the ledger event it names", nil
		}
		return "", nil
	}
	return "the state names a ledger event that does not exist", nil
}

func (s *Service) check(in *Input) error {
	in.Purpose = strings.TrimSpace(in.Purpose)
	if in.Purpose == "" {
		return errs.Field("purpose", "required: the key of a purpose of the register")
	}
	if in.Action != Grant && in.Action != Withdraw {
		return errs.Field("action", "grant or withdraw")
	}
	if !slices.Contains(Methods, in.Method) {
		return errs.Field("method", "one of %s", strings.Join(Methods, ", "))
	}
	in.Source = strings.TrimSpace(in.Source)
	if utf8.RuneCountInString(in.Source) > 200 || !utf8.ValidString(in.Source) {
		return errs.Field("source", "at most 200 characters")
	}
	if in.IP != "" {
		if in.IP = TruncateIP(in.IP); in.IP == "" {
			return errs.Field("ip", "an IPv4 or IPv6 address")
		}
	}
	if in.NoticeVersion < 0 {
		return errs.Field("notice_version", "a version of the purpose's notice")
	}
	return nil
}

// Record appends a grant or withdrawal of subjectID's consent and returns
// it with its signed receipt. Consent can only be given to a purpose based
// on consent, for a notice version it has; withdrawing is always possible.
func (s *Service) Record(ctx context.Context, tenantID, subjectID string, in Input) (Recorded, error) {
	return s.record(ctx, tenantID, subjectID, in, nil)
}

// record is Record that also runs within, when not nil, in the event's
// transaction before it is written: an error from within records nothing.
func (s *Service) record(ctx context.Context, tenantID, subjectID string, in Input, within func(ctx context.Context, tx *sqldb.Tx) error) (Recorded, error) {
	rec, err := s.append(ctx, tenantID, subjectID, in, within)
	if err != nil || rec.Action != Grant {
		return rec, err
	}
	rec.WithdrawURL, err = s.WithdrawURL(ctx, tenantID, subjectID, rec.Purpose)
	return rec, err
}

// append writes the event.
func (s *Service) append(ctx context.Context, tenantID, subjectID string, in Input, within func(ctx context.Context, tx *sqldb.Tx) error) (Recorded, error) {
	key, err := s.subjects.Key(ctx, tenantID, subjectID) // first: an unknown subject is 404 whatever the input
	if err != nil {
		return Recorded{}, err
	}
	if err := s.check(&in); err != nil {
		return Recorded{}, err
	}
	p, err := s.register.Get(ctx, tenantID, in.Purpose)
	if errs.Is(err, errs.NotFound) {
		return Recorded{}, errs.Field("purpose", "no purpose with the key %q in the register", in.Purpose)
	}
	if err != nil {
		return Recorded{}, err
	}
	if p.LegalBasis != register.Consent {
		return Recorded{}, errs.Field("purpose", "%q is based on %s, not on consent", p.Key, p.LegalBasis)
	}
	notice, err := s.notice(ctx, tenantID, p, in.NoticeVersion)
	if err != nil {
		return Recorded{}, err
	}
	t, err := s.tenants.ByID(ctx, tenantID) // for the receipt, read here: the committer runs one unit at a time
	if err != nil {
		return Recorded{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Recorded{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	e := Event{ID: id.String(), SubjectID: subjectID, Purpose: p.Key, Action: in.Action, Method: in.Method,
		NoticeVersion: notice.Version, NoticeHash: notice.SHA256, Source: in.Source, IP: in.IP, CreatedAt: now}
	if in.Action == Grant && p.ConsentValidDays > 0 {
		until := now.AddDate(0, 0, p.ConsentValidDays)
		e.ValidUntil = &until
	}
	var out Recorded
	details := map[string]any{"purpose": p.Key, "method": in.Method, "notice_version": notice.Version}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		// The subject's row, locked by this update, orders the appends to
		// its ledger.
		res, err := tx.Exec(ctx, "UPDATE subjects SET last_activity_at = ? WHERE tenant_id = ? AND id = ?",
			now.UnixMicro(), tenantID, subjectID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errs.E(errs.NotFound, "no such subject")
		}
		if within != nil {
			if err := within(ctx, tx); err != nil {
				return err
			}
		}
		prev := genesis(tenantID, subjectID)
		err = tx.QueryRow(ctx, "SELECT seq, hash FROM consent_events WHERE tenant_id = ? AND subject_id = ? ORDER BY seq DESC LIMIT 1",
			tenantID, subjectID).Scan(&e.Seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		e.Seq++
		h, err := s.chainMAC(ctx, tx.Q, tenantID, prev, e)
		if err != nil {
			return err
		}
		e.Hash = hex.EncodeToString(h)
		receipt, err := s.receipt(ctx, tx.Q, t, p, e)
		if err != nil {
			return err
		}
		sealed, err := json.Marshal(origin{Source: e.Source, IP: e.IP})
		if err != nil {
			return err
		}
		until := int64(0)
		if e.ValidUntil != nil {
			until = e.ValidUntil.UnixMicro()
		}
		mac, err := s.stateMAC(ctx, tx.Q, tenantID, subjectID, stateRow{purposeID: p.ID, action: e.Action, eventID: e.ID,
			at: now.UnixMicro(), until: until, eventHash: h})
		if err != nil {
			return err
		}
		// The event and the purpose's new state, together (one round trip
		// on PostgreSQL).
		if err := tx.Run(ctx, []sqldb.Stmt{
			{SQL: `INSERT INTO consent_events (tenant_id, id, subject_id, seq, purpose_id, purpose_key, notice_version,
				notice_hash, action, method, origin_ct, created_at, valid_until, prev_hash, hash, receipt)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				Args: []any{tenantID, e.ID, subjectID, e.Seq, p.ID, p.Key, e.NoticeVersion, e.NoticeHash, e.Action, e.Method,
					key.Seal("consent_events", "origin_ct", e.ID, sealed), now.UnixMicro(), until, prev, h, receipt}},
			{SQL: "DELETE FROM consent_state WHERE tenant_id = ? AND subject_id = ? AND purpose_id = ?", Args: []any{tenantID, subjectID, p.ID}},
			{SQL: `INSERT INTO consent_state (tenant_id, subject_id, purpose_id, action, event_id, at, valid_until, mac)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, Args: []any{tenantID, subjectID, p.ID, e.Action, e.ID, now.UnixMicro(), until, mac}},
		}); err != nil {
			return err
		}
		// The audit event is written in this transaction, after these rows:
		// its details name the event's place in the chain.
		details["seq"], details["hash"] = e.Seq, e.Hash
		out = Recorded{Event: e, Receipt: receipt}
		return nil
	}, audit.Event{Action: "consent." + in.Action, TargetType: "subject", TargetID: subjectID, SubjectID: subjectID, Details: details})
	return out, err
}

// notice returns version v of p's notice (0: the current one).
func (s *Service) notice(ctx context.Context, tenantID string, p register.Purpose, v int) (register.Notice, error) {
	if p.Notice == nil {
		return register.Notice{}, errs.Field("purpose", "%q has no notice text", p.Key)
	}
	if v == 0 || v == p.Notice.Version {
		return *p.Notice, nil
	}
	ns, err := s.register.Notices(ctx, tenantID, p.Key)
	if err != nil {
		return register.Notice{}, err
	}
	for _, n := range ns {
		if n.Version == v {
			return n, nil
		}
	}
	return register.Notice{}, errs.Field("notice_version", "%q has no notice version %d", p.Key, v)
}

// events loads a subject's ledger in order, with the stored hashes.
func (s *Service) events(ctx context.Context, tenantID, subjectID string) ([]Event, [][]byte, error) {
	key, err := s.subjects.Key(ctx, tenantID, subjectID)
	if err != nil {
		return nil, nil, err
	}
	rows, err := s.db.Read().Query(ctx, `SELECT id, seq, purpose_key, notice_version, notice_hash, action, method, origin_ct,
			created_at, valid_until, prev_hash, hash FROM consent_events WHERE tenant_id = ? AND subject_id = ? ORDER BY seq`,
		tenantID, subjectID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []Event
	var prevs [][]byte
	for rows.Next() {
		e := Event{SubjectID: subjectID}
		var ct, prev, hash []byte
		var created, until int64
		if err := rows.Scan(&e.ID, &e.Seq, &e.Purpose, &e.NoticeVersion, &e.NoticeHash, &e.Action, &e.Method, &ct,
			&created, &until, &prev, &hash); err != nil {
			return nil, nil, err
		}
		pt, err := key.Open("consent_events", "origin_ct", e.ID, ct)
		if err != nil {
			return nil, nil, err
		}
		var o origin
		if err := json.Unmarshal(pt, &o); err != nil {
			return nil, nil, err
		}
		e.Source, e.IP, e.CreatedAt, e.Hash = o.Source, o.IP, time.UnixMicro(created).UTC(), hex.EncodeToString(hash)
		if until != 0 {
			t := time.UnixMicro(until).UTC()
			e.ValidUntil = &t
		}
		out, prevs = append(out, e), append(prevs, prev)
	}
	return out, prevs, rows.Err()
}

// Ledger returns the subject's consent state per purpose and its whole
// history, oldest first. The read is audited.
func (s *Service) Ledger(ctx context.Context, tenantID, subjectID string) (Ledger, error) {
	es, _, err := s.events(ctx, tenantID, subjectID)
	if err != nil {
		return Ledger{}, err
	}
	now := s.now()
	l := Ledger{State: []State{}, History: es}
	if l.History == nil {
		l.History = []Event{}
	}
	last := map[string]Event{}
	for _, e := range es {
		last[e.Purpose] = e
	}
	for _, e := range last {
		st := State{Purpose: e.Purpose, Status: Withdrawn, Since: e.CreatedAt, ValidUntil: e.ValidUntil,
			NoticeVersion: e.NoticeVersion, EventID: e.ID}
		if e.Action == Grant {
			st.Status = Granted
			if e.ValidUntil != nil && !now.Before(*e.ValidUntil) {
				st.Status = Expired
			}
		}
		l.State = append(l.State, st)
	}
	slices.SortFunc(l.State, func(a, b State) int { return strings.Compare(a.Purpose, b.Purpose) })
	return l, s.log.Record(ctx, tenantID, audit.Event{Action: "consent.read", TargetType: "subject", TargetID: subjectID, SubjectID: subjectID})
}

// Verdict is the result of checking a subject's ledger.
type Verdict struct {
	OK      bool   `json:"ok"`
	Events  int    `json:"events"`
	Head    string `json:"head"`              // hash of the last event
	Problem string `json:"problem,omitempty"` // the first break found
}

// Verify recomputes the subject's chain and compares it with the audit
// trail, which holds every event's seq and hash — after verifying the
// audit chain itself up to its signed, anchored head: an edited event, a
// removed or reordered one, and a history cut short all show, even when
// the audit trail was rewritten to match. Each current state must agree
// with the ledger too.
func (s *Service) Verify(ctx context.Context, tenantID, subjectID string) (Verdict, error) {
	es, prevs, err := s.events(ctx, tenantID, subjectID)
	if err != nil {
		return Verdict{}, err
	}
	v := Verdict{OK: true, Events: len(es)}
	fail := func(format string, args ...any) (Verdict, error) {
		v.OK, v.Problem = false, fmt.Sprintf(format, args...)
		return v, nil
	}
	av, err := s.log.Verify(ctx, tenantID)
	if err != nil {
		return Verdict{}, err
	}
	if !av.OK {
		return fail("the audit trail the ledger is checked against is broken: %s", av)
	}
	prev := genesis(tenantID, subjectID)
	for i, e := range es {
		if e.Seq != int64(i+1) {
			return fail("event %d: found seq %d where %d was due", i+1, e.Seq, i+1)
		}
		if !hmac.Equal(prevs[i], prev) {
			return fail("event %d: does not follow event %d", e.Seq, e.Seq-1)
		}
		h, err := s.chainMAC(ctx, s.db.Read(), tenantID, prev, e)
		if err != nil {
			return Verdict{}, err
		}
		if hex.EncodeToString(h) != e.Hash {
			return fail("event %d: altered", e.Seq)
		}
		prev, v.Head = h, e.Hash
	}
	audited, err := s.auditedChain(ctx, tenantID, subjectID)
	if err != nil {
		return Verdict{}, err
	}
	for seq, hash := range audited {
		if seq > int64(len(es)) {
			return fail("the audit trail records event %d, which the ledger no longer has", seq)
		}
		if es[seq-1].Hash != hash {
			return fail("event %d: differs from the one the audit trail recorded", seq)
		}
	}
	if len(audited) != len(es) {
		return fail("the ledger has %d events, the audit trail recorded %d", len(es), len(audited))
	}
	purposes := map[string]bool{}
	for _, e := range es {
		if !purposes[e.Purpose] {
			purposes[e.Purpose] = true
			c, err := s.Check(ctx, tenantID, subjectID, e.Purpose)
			if err != nil {
				return Verdict{}, err
			}
			if c.Tampered {
				return fail("the current state for %q does not match the ledger", e.Purpose)
			}
		}
	}
	return v, nil
}

// auditedChain returns seq → hash of the subject's consent events as the
// audit trail recorded them.
func (s *Service) auditedChain(ctx context.Context, tenantID, subjectID string) (map[int64]string, error) {
	out := map[int64]string{}
	cursor := ""
	for {
		es, next, err := s.audit.Query(ctx, tenantID, audit.Filter{SubjectID: subjectID, Action: "consent.*", Cursor: cursor, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if e.Action != "consent."+Grant && e.Action != "consent."+Withdraw {
				continue
			}
			seq, _ := e.Details["seq"].(float64)
			hash, _ := e.Details["hash"].(string)
			out[int64(seq)] = hash
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// MissingFilter selects the active subjects without valid consent: for
// the purpose with key purposeKey, or for any purpose when it is "".
func (s *Service) MissingFilter(ctx context.Context, tenantID, purposeKey string) (subject.Where, error) {
	now := s.now().UnixMicro()
	cond := "c.tenant_id = subjects.tenant_id AND c.subject_id = subjects.id AND c.action = ? AND (c.valid_until = 0 OR c.valid_until > ?)"
	args := []any{Grant, now}
	if purposeKey != "" {
		p, err := s.register.Get(ctx, tenantID, purposeKey)
		if errs.Is(err, errs.NotFound) {
			return subject.Where{}, errs.Field("purpose", "no purpose with the key %q in the register", purposeKey)
		}
		if err != nil {
			return subject.Where{}, err
		}
		cond += " AND c.purpose_id = ?"
		args = append(args, p.ID)
	}
	return subject.Where{SQL: "status = ? AND NOT EXISTS (SELECT 1 FROM consent_state c WHERE " + cond + ")",
		Args: append([]any{subject.StatusActive}, args...)}, nil
}

// States answers where each of ids stands for one purpose (a contacts list
// column): granted, expired or withdrawn, and since when; someone never
// asked is absent. Only the state is read, for display: the processing
// check (Check) is what verifies it against the ledger.
func (s *Service) States(ctx context.Context, tenantID, purposeKey string, ids []string) (map[string]State, error) {
	out := make(map[string]State, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	p, err := s.register.Get(ctx, tenantID, purposeKey)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.Field("purpose", "no purpose with the key %q in the register", purposeKey)
	}
	if err != nil {
		return nil, err
	}
	args := []any{tenantID, p.ID}
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := s.db.Read().Query(ctx, `SELECT subject_id, action, at, valid_until FROM consent_state
		WHERE tenant_id = ? AND purpose_id = ? AND subject_id IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+")", args...)
	if err != nil {
		return nil, fmt.Errorf("consent states: %w", err)
	}
	defer rows.Close()
	now := s.now()
	for rows.Next() {
		var id, action string
		var at, until int64
		if err := rows.Scan(&id, &action, &at, &until); err != nil {
			return nil, err
		}
		st := State{Purpose: p.Key, Status: Withdrawn, Since: time.UnixMicro(at).UTC()}
		if until != 0 {
			u := time.UnixMicro(until).UTC()
			st.ValidUntil = &u
		}
		if action == Grant {
			st.Status = Granted
			if st.ValidUntil != nil && !now.Before(*st.ValidUntil) {
				st.Status = Expired
			}
		}
		out[id] = st
	}
	return out, rows.Err()
}

// PurposeCounts is where the active contacts stand for one consent-based
// purpose.
type PurposeCounts struct {
	Purpose    string `json:"purpose"`
	Name       string `json:"name"`
	Valid      int    `json:"valid"`       // granted, and not expired
	Expired    int    `json:"expired"`     // granted, but past its validity
	Withdrawn  int    `json:"withdrawn"`   // withdrawn or refused
	NeverAsked int    `json:"never_asked"` // no answer recorded
}

// Report answers, for every consent-based purpose of the register, how
// many active contacts hold a valid consent, an expired one, a withdrawn
// one, or none at all. Only counts are read: the active contacts once,
// then per purpose only the contacts with a consent state for it (by the
// index on the purpose), so a purpose few people answered costs little
// whatever the number of contacts.
func (s *Service) Report(ctx context.Context, tenantID string) ([]PurposeCounts, error) {
	ps, err := s.register.List(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := []PurposeCounts{}
	active := -1
	// CROSS JOIN: SQLite reads consent_state first (by its index on the
	// purpose) rather than every active contact; PostgreSQL plans freely.
	now := s.now().UnixMicro()
	for _, p := range ps {
		if p.LegalBasis != register.Consent {
			continue
		}
		if active < 0 {
			if active, err = s.subjects.Active(ctx, tenantID); err != nil {
				return nil, err
			}
		}
		pc := PurposeCounts{Purpose: p.Key, Name: p.Name}
		err := s.db.Read().QueryRow(ctx, `SELECT
				COALESCE(SUM(CASE WHEN c.action = ? AND (c.valid_until = 0 OR c.valid_until > ?) THEN 1 ELSE 0 END), 0),
				COALESCE(SUM(CASE WHEN c.action = ? AND c.valid_until <> 0 AND c.valid_until <= ? THEN 1 ELSE 0 END), 0),
				COALESCE(SUM(CASE WHEN c.action = ? THEN 1 ELSE 0 END), 0)
			FROM consent_state c CROSS JOIN subjects
			WHERE c.tenant_id = ? AND c.purpose_id = ? AND subjects.tenant_id = c.tenant_id AND subjects.id = c.subject_id
				AND subjects.status = ? AND `+subject.ContactsOnly,
			Grant, now, Grant, now, Withdraw, tenantID, p.ID, subject.StatusActive).Scan(&pc.Valid, &pc.Expired, &pc.Withdrawn)
		if err != nil {
			return nil, fmt.Errorf("consent report: %w", err)
		}
		pc.NeverAsked = active - pc.Valid - pc.Expired - pc.Withdrawn
		out = append(out, pc)
	}
	return out, nil
}

// Eraser is consent's part of an erasure or anonymisation
// (subject.Eraser): the person's ledger, its current state and their
// places in campaigns go.
func (s *Service) Eraser() subject.Eraser {
	tables := []string{"consent_events", "consent_state", "consent_campaign_recipients"}
	return subject.Eraser{Name: "consent", Tables: tables, Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		for _, t := range tables {
			if err := e.Delete(ctx, t, "subject_id = ?", e.SubjectID); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}}
}
