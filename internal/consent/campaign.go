package consent

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
)

// Consent refresh campaigns ask a set of contacts, by email, to grant or
// refuse consent for one purpose. Each contact gets a link of its own to a
// public page; the link answers once and expires.

// Audiences of a campaign.
const (
	AudienceMissing        = "missing"          // active contacts without valid consent for the purpose
	AudienceStale          = "stale"            // valid consent given more than older_than_months ago
	AudienceMissingOrStale = "missing_or_stale" // both
	AudienceSubjects       = "subjects"         // the listed subject ids
)

// Answers on a campaign's page.
const (
	AnswerGrant  = "grant"
	AnswerRefuse = "refuse"
)

// Campaign limits.
const (
	defaultLinkDays = 14
	maxLinkDays     = 90
	maxListed       = 1000    // subject_ids per campaign
	maxAudience     = 100_000 // contacts per campaign
)

// CampaignInput starts a campaign.
type CampaignInput struct {
	Name            string   `json:"name"`
	Purpose         string   `json:"purpose"`
	Audience        string   `json:"audience"`
	OlderThanMonths int      `json:"older_than_months"` // stale audiences
	SubjectIDs      []string `json:"subject_ids"`       // the subjects audience
	LinkDays        int      `json:"link_days"`         // how long links work; default 14
}

// Audience is how a campaign chose its contacts.
type Audience struct {
	Kind            string `json:"kind"`
	OlderThanMonths int    `json:"older_than_months,omitempty"`
	Listed          int    `json:"listed,omitempty"` // how many ids were listed
}

// Counts is where a campaign stands.
type Counts struct {
	Recipients int `json:"recipients"` // contacts mailed a link
	Queued     int `json:"queued"`     // mail not yet accepted by the SMTP server
	Sent       int `json:"sent"`       // mail accepted by the SMTP server
	Bounced    int `json:"bounced"`    // refused for good by the SMTP server, or a hard bounce reported since
	Answered   int `json:"answered"`
	Granted    int `json:"granted"`
	Refused    int `json:"refused"`
	NoEmail    int `json:"skipped_no_email"` // in the audience, but without an email address
	Pending    int `json:"skipped_pending"`  // in the audience, but holding an open link already
}

// Campaign is a consent refresh campaign.
type Campaign struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Purpose       string    `json:"purpose"`
	NoticeVersion int       `json:"notice_version"`
	Audience      Audience  `json:"audience"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"` // when its links stop working
	Counts        Counts    `json:"counts"`
}

func (in *CampaignInput) check() error {
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > 200 || !utf8.ValidString(in.Name) {
		return errs.Field("name", "required, at most 200 characters")
	}
	if strings.TrimSpace(in.Purpose) == "" {
		return errs.Field("purpose", "required: the key of a consent-based purpose")
	}
	switch in.Audience {
	case AudienceMissing:
	case AudienceStale, AudienceMissingOrStale:
		if in.OlderThanMonths < 1 || in.OlderThanMonths > 120 {
			return errs.Field("older_than_months", "between 1 and 120 for audience %q", in.Audience)
		}
	case AudienceSubjects:
		if len(in.SubjectIDs) == 0 || len(in.SubjectIDs) > maxListed {
			return errs.Field("subject_ids", "between 1 and %d subject ids", maxListed)
		}
	default:
		return errs.Field("audience", "one of %s, %s, %s, %s", AudienceMissing, AudienceStale, AudienceMissingOrStale, AudienceSubjects)
	}
	if in.Audience != AudienceSubjects && len(in.SubjectIDs) > 0 {
		return errs.Field("subject_ids", "only with audience %q", AudienceSubjects)
	}
	if in.LinkDays == 0 {
		in.LinkDays = defaultLinkDays
	}
	if in.LinkDays < 1 || in.LinkDays > maxLinkDays {
		return errs.Field("link_days", "between 1 and %d", maxLinkDays)
	}
	return nil
}

// audienceFilter selects the active contacts of the campaign's audience.
func (s *Service) audienceFilter(ctx context.Context, tenantID string, p register.Purpose, in CampaignInput) (subject.Where, error) {
	now := s.now()
	stale := subject.Where{SQL: `status = ? AND EXISTS (SELECT 1 FROM consent_state c WHERE c.tenant_id = subjects.tenant_id
		AND c.subject_id = subjects.id AND c.purpose_id = ? AND c.action = ? AND c.at < ? AND (c.valid_until = 0 OR c.valid_until > ?))`,
		Args: []any{subject.StatusActive, p.ID, Grant, now.AddDate(0, -in.OlderThanMonths, 0).UnixMicro(), now.UnixMicro()}}
	switch in.Audience {
	case AudienceStale:
		return stale, nil
	case AudienceSubjects:
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(in.SubjectIDs)), ", ")
		args := []any{subject.StatusActive}
		for _, id := range in.SubjectIDs {
			args = append(args, id)
		}
		return subject.Where{SQL: "status = ? AND id IN (" + ph + ")", Args: args}, nil
	}
	missing, err := s.MissingFilter(ctx, tenantID, p.Key)
	if err != nil || in.Audience == AudienceMissing {
		return missing, err
	}
	return subject.Where{SQL: "(" + missing.SQL + ") OR (" + stale.SQL + ")", Args: append(missing.Args, stale.Args...)}, nil
}

// recipient is a contact about to be mailed.
type recipient struct {
	subjectID, mailID string
	hash              []byte
	msg               mail.Message
	key               *keyring.DataKey
}

// audience answers the campaign's purpose, the contacts of its audience
// (active, not restricted) and those of them holding an open link for the
// purpose already.
func (s *Service) audience(ctx context.Context, tenantID string, in CampaignInput) (register.Purpose, []string, map[string]bool, error) {
	p, err := s.consentPurpose(ctx, tenantID, in.Purpose)
	if err != nil {
		return p, nil, nil, err
	}
	if in.Audience == AudienceSubjects {
		for i, id := range in.SubjectIDs {
			if _, err := s.subjects.Key(ctx, tenantID, id); err != nil {
				return p, nil, nil, errs.Field(fmt.Sprintf("subject_ids[%d]", i), "no such subject")
			}
		}
	}
	where, err := s.audienceFilter(ctx, tenantID, p, in)
	if err != nil {
		return p, nil, nil, err
	}
	where.SQL = "restricted_since = 0 AND (" + where.SQL + ")" // restricted data is not used, not even to ask
	var ids []string
	for after := ""; ; {
		page, err := s.subjects.IDs(ctx, tenantID, where, after, 1000)
		if err != nil {
			return p, nil, nil, err
		}
		ids = append(ids, page...)
		if len(ids) > maxAudience {
			return p, nil, nil, errs.Field("audience", "more than %d contacts: narrow the audience", maxAudience)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1]
	}
	open, err := s.openLinks(ctx, tenantID, p.ID)
	return p, ids, open, err
}

// Preview is whom a campaign would reach, before it is started.
type Preview struct {
	Audience   int `json:"audience"`         // contacts in the audience
	Recipients int `json:"recipients"`       // of them, those who would be mailed a link
	NoEmail    int `json:"skipped_no_email"` // without an email address
	Pending    int `json:"skipped_pending"`  // holding an open link for the purpose already
}

// PreviewCampaign counts whom StartCampaign would reach with in, changing
// nothing and reading no personal data (whether a contact has an email
// address is known by its blind index).
func (s *Service) PreviewCampaign(ctx context.Context, tenantID string, in CampaignInput) (Preview, error) {
	if err := in.check(); err != nil {
		return Preview{}, err
	}
	_, ids, open, err := s.audience(ctx, tenantID, in)
	if err != nil {
		return Preview{}, err
	}
	withEmail, err := s.subjects.WithEmail(ctx, tenantID, ids)
	if err != nil {
		return Preview{}, err
	}
	pv := Preview{Audience: len(ids)}
	for _, id := range ids {
		switch {
		case open[id]:
			pv.Pending++
		case !withEmail[id]:
			pv.NoEmail++
		default:
			pv.Recipients++
		}
	}
	return pv, nil
}

// StartCampaign chooses the audience, and queues one mail with a link of
// its own to each of its contacts that has an email address and no open
// link for the purpose yet. All of it is one transaction: a campaign is
// started entirely or not at all.
func (s *Service) StartCampaign(ctx context.Context, tenantID string, in CampaignInput) (Campaign, error) {
	if err := in.check(); err != nil {
		return Campaign{}, err
	}
	p, ids, open, err := s.audience(ctx, tenantID, in)
	if err != nil {
		return Campaign{}, err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Campaign{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Campaign{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	c := Campaign{ID: id.String(), Name: in.Name, Purpose: p.Key, NoticeVersion: p.Notice.Version,
		Audience:  Audience{Kind: in.Audience, OlderThanMonths: in.OlderThanMonths, Listed: len(in.SubjectIDs)},
		CreatedAt: now, ExpiresAt: now.AddDate(0, 0, in.LinkDays)}
	var rs []recipient
	var events []audit.Event
	footer := s.tenants.Footer(ctx, t)
	for _, sid := range ids {
		if open[sid] {
			c.Counts.Pending++
			continue
		}
		email, key, err := s.subjects.Email(ctx, tenantID, sid)
		if err != nil {
			return Campaign{}, err
		}
		if email == "" {
			c.Counts.NoEmail++
			continue
		}
		mailID, err := uuid.NewV7()
		if err != nil {
			return Campaign{}, err
		}
		secret := keyring.NewSecret()
		msg := campaignMail(t.Name, footer, s.issuer+"/privacy/"+t.Slug+"/consent/"+secret, p, c.ExpiresAt)
		msg.ID, msg.TenantID, msg.SubjectID, msg.To = mailID.String(), tenantID, sid, email
		rs = append(rs, recipient{subjectID: sid, mailID: mailID.String(), hash: linkHash(secret), key: key, msg: msg})
		events = append(events, audit.Event{Action: "consent.request", TargetType: "subject", TargetID: sid, SubjectID: sid,
			Details: map[string]any{"campaign": c.ID, "purpose": p.Key}})
	}
	c.Counts.Recipients, c.Counts.Queued = len(rs), len(rs)
	audience, err := json.Marshal(c.Audience)
	if err != nil {
		return Campaign{}, err
	}
	events = append([]audit.Event{{Action: "campaign.start", TargetType: "campaign", TargetID: c.ID,
		Details: map[string]any{"purpose": p.Key, "audience": in.Audience, "recipients": len(rs),
			"skipped_no_email": c.Counts.NoEmail, "skipped_pending": c.Counts.Pending}}}, events...)
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO consent_campaigns (tenant_id, id, name, purpose_id, purpose_key, notice_version,
				audience, expires_at, no_email, pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			tenantID, c.ID, c.Name, p.ID, p.Key, c.NoticeVersion, string(audience), c.ExpiresAt.UnixMicro(),
			c.Counts.NoEmail, c.Counts.Pending, now.UnixMicro()); err != nil {
			return err
		}
		for _, r := range rs {
			if _, err := tx.Exec(ctx, `INSERT INTO consent_campaign_recipients (tenant_id, campaign_id, subject_id, token_hash, mail_id, created_at)
					VALUES (?, ?, ?, ?, ?, ?)`, tenantID, c.ID, r.subjectID, r.hash, r.mailID, now.UnixMicro()); err != nil {
				return err
			}
			if err := s.mail.Queue(ctx, tx, r.key, r.msg); err != nil {
				return err
			}
		}
		return nil
	}, events...)
	if err != nil {
		return Campaign{}, err
	}
	return c, nil
}

// consentPurpose finds a purpose that consent can be asked for.
func (s *Service) consentPurpose(ctx context.Context, tenantID, key string) (register.Purpose, error) {
	p, err := s.register.Get(ctx, tenantID, key)
	if errs.Is(err, errs.NotFound) {
		return p, errs.Field("purpose", "no purpose with the key %q in the register", key)
	}
	if err != nil {
		return p, err
	}
	if p.LegalBasis != register.Consent || p.Notice == nil {
		return p, errs.Field("purpose", "%q is based on %s, not on consent", p.Key, p.LegalBasis)
	}
	return p, nil
}

// openLinks returns the subjects holding a link for the purpose that is
// neither answered nor expired.
func (s *Service) openLinks(ctx context.Context, tenantID, purposeID string) (map[string]bool, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT r.subject_id FROM consent_campaign_recipients r
		JOIN consent_campaigns c ON c.tenant_id = r.tenant_id AND c.id = r.campaign_id
		WHERE r.tenant_id = ? AND c.purpose_id = ? AND r.answered_at = 0 AND c.expires_at > ?`,
		tenantID, purposeID, s.now().UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

func campaignMail(org, footer, link string, p register.Purpose, expires time.Time) mail.Message {
	return mail.Message{Kind: "consent-request", Subject: org + " asks for your consent: " + p.Name,
		Text: fmt.Sprintf(`Hello,

%s asks whether you agree to the following use of your personal data:

%s

Read what it means and answer here (agree or refuse):

%s

The link works once, until %s. If you do nothing, nothing
changes: without your consent, this use does not happen.

%s`, org, p.Name, link, expires.Format("2 January 2006"), footer)}
}

func linkHash(secret string) []byte { return keyring.HashSecret("consent-link", secret) }

// Campaign returns a campaign and its counts.
func (s *Service) Campaign(ctx context.Context, tenantID, id string) (Campaign, error) {
	cs, err := s.campaigns(ctx, tenantID, "c.id = ?", id)
	if err != nil {
		return Campaign{}, err
	}
	if len(cs) == 0 {
		return Campaign{}, errs.E(errs.NotFound, "no such campaign")
	}
	return cs[0], nil
}

// Campaigns lists the tenant's campaigns, newest first.
func (s *Service) Campaigns(ctx context.Context, tenantID string) ([]Campaign, error) {
	return s.campaigns(ctx, tenantID, "1 = 1")
}

func (s *Service) campaigns(ctx context.Context, tenantID, cond string, args ...any) ([]Campaign, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT c.id, c.name, c.purpose_key, c.notice_version, c.audience, c.expires_at,
			c.no_email, c.pending, c.created_at,
			COUNT(r.subject_id),
			COALESCE(SUM(CASE WHEN m.sent_at = 0 AND m.failed_at = 0 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN m.sent_at <> 0 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN m.failed_at <> 0 OR EXISTS (SELECT 1 FROM subject_bounces b WHERE b.tenant_id = r.tenant_id
				AND b.subject_id = r.subject_id AND b.kind = 'hard' AND b.at >= r.created_at) THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN r.answered_at <> 0 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN r.answer = ? THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN r.answer = ? THEN 1 ELSE 0 END), 0)
		FROM consent_campaigns c
		LEFT JOIN consent_campaign_recipients r ON r.tenant_id = c.tenant_id AND r.campaign_id = c.id
		LEFT JOIN mail_outbox m ON m.tenant_id = r.tenant_id AND m.id = r.mail_id
		WHERE c.tenant_id = ? AND `+cond+`
		GROUP BY c.id, c.name, c.purpose_key, c.notice_version, c.audience, c.expires_at, c.no_email, c.pending, c.created_at
		ORDER BY c.id DESC`, append([]any{AnswerGrant, AnswerRefuse, tenantID}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Campaign{}
	for rows.Next() {
		var c Campaign
		var audience string
		var expires, created int64
		n := &c.Counts
		if err := rows.Scan(&c.ID, &c.Name, &c.Purpose, &c.NoticeVersion, &audience, &expires, &n.NoEmail, &n.Pending, &created,
			&n.Recipients, &n.Queued, &n.Sent, &n.Bounced, &n.Answered, &n.Granted, &n.Refused); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(audience), &c.Audience); err != nil {
			return nil, err
		}
		c.ExpiresAt, c.CreatedAt = time.UnixMicro(expires).UTC(), time.UnixMicro(created).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// LinkPage is what the public page of a campaign link shows.
type LinkPage struct {
	Organisation string
	Purpose      string
	Description  string
	Notice       register.Notice
	ExpiresAt    time.Time
}

var errCampaignLink = errs.E(errs.Gone, "this link is not valid: it was used already or has expired")

// link is a live campaign link.
type link struct {
	tenantID, campaignID, subjectID, purposeKey string
	expires                                     time.Time
}

// findLink resolves the secret of a link of tenant slug that is neither
// answered nor expired.
func (s *Service) findLink(ctx context.Context, q sqldb.Q, slug, secret string) (link, error) {
	var l link
	if len(secret) != 43 {
		return l, errCampaignLink
	}
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil {
		return l, errCampaignLink
	}
	var expires, answered int64
	err = q.QueryRow(ctx, `SELECT r.campaign_id, r.subject_id, r.answered_at, c.purpose_key, c.expires_at
		FROM consent_campaign_recipients r JOIN consent_campaigns c ON c.tenant_id = r.tenant_id AND c.id = r.campaign_id
		WHERE r.token_hash = ? AND r.tenant_id = ?`, linkHash(secret), t.ID).Scan(&l.campaignID, &l.subjectID, &answered, &l.purposeKey, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return l, errCampaignLink
	}
	if err != nil {
		return l, err
	}
	l.tenantID, l.expires = t.ID, time.UnixMicro(expires).UTC()
	if answered != 0 || !s.now().Before(l.expires) {
		return l, errCampaignLink
	}
	return l, nil
}

// ViewLink returns what the page of a campaign link shows. Opening the
// page changes nothing (mail scanners open links too).
func (s *Service) ViewLink(ctx context.Context, slug, secret string) (LinkPage, error) {
	l, err := s.findLink(ctx, s.db.Read(), slug, secret)
	if err != nil {
		return LinkPage{}, err
	}
	t, err := s.tenants.ByID(ctx, l.tenantID)
	if err != nil {
		return LinkPage{}, err
	}
	p, err := s.consentPurpose(ctx, l.tenantID, l.purposeKey)
	if err != nil {
		return LinkPage{}, errCampaignLink
	}
	return LinkPage{Organisation: t.Name, Purpose: p.Name, Description: p.Description, Notice: *p.Notice, ExpiresAt: l.expires}, nil
}

// AnswerLink records the person's answer to a campaign link — a grant, or
// a refusal recorded as a withdrawal — for the notice version they were
// shown, and spends the link: of concurrent answers exactly one counts.
func (s *Service) AnswerLink(ctx context.Context, slug, secret, answer string, noticeVersion int, ip, userAgent string) (Recorded, error) {
	action := map[string]string{AnswerGrant: Grant, AnswerRefuse: Withdraw}[answer]
	if action == "" {
		return Recorded{}, errs.Field("answer", "grant or refuse")
	}
	l, err := s.findLink(ctx, s.db.Read(), slug, secret)
	if err != nil {
		return Recorded{}, err
	}
	c, err := s.Campaign(ctx, l.tenantID, l.campaignID)
	if err != nil {
		return Recorded{}, err
	}
	key, err := s.subjects.Key(ctx, l.tenantID, l.subjectID)
	if err != nil {
		return Recorded{}, errCampaignLink
	}
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSubject, ID: l.subjectID, SubjectID: l.subjectID,
		IP: ip, UserAgent: userAgent, Key: key})
	claim := func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE consent_campaign_recipients SET answer = ?, answered_at = ?
			WHERE tenant_id = ? AND campaign_id = ? AND subject_id = ? AND answered_at = 0`,
			answer, s.now().UnixMicro(), l.tenantID, l.campaignID, l.subjectID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errCampaignLink
		}
		return nil
	}
	return s.record(ctx, l.tenantID, l.subjectID, Input{Purpose: l.purposeKey, Action: action, Method: "email_link",
		NoticeVersion: noticeVersion, Source: "campaign: " + c.Name, IP: ip}, claim)
}
