package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity/password"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// One-time links: an invitation (or the first owner's setup link) sets a
// first password; a reset sets a new one. The secret travels in the URL
// fragment, which browsers do not send to servers, so it stays out of
// access logs and Referer headers; the page posts it back.
const (
	linkInvite = "invite"
	linkReset  = "reset"

	inviteTTL = 7 * 24 * time.Hour
	resetTTL  = 30 * time.Minute

	// resetsPerHour bounds reset mails per account, so that nobody can
	// flood a mailbox through the public form.
	resetsPerHour = 3
)

var errLink = errs.E(errs.Gone, "this link is not valid: it was used already, replaced by a newer one, or has expired")

// linkURL is where a link's secret is used: the console page for purpose.
// Invitation and reset links carry the tenant in the path, so that the
// page shows its password policy, and the secret in the fragment, out of
// logs and Referer headers; the page's script moves it into the form. The
// links about a sign-in address open pages of their own, with the secret
// in the path (as the privacy portal's links).
func (s *Service) linkURL(purpose, slug, secret string) string {
	switch purpose {
	case linkEmail:
		return s.links + "/account/email/" + secret
	case linkEmailUndo:
		return s.links + "/account/email-undo/" + secret
	case linkReset:
		return s.links + "/login/" + slug + "/reset#token=" + secret
	}
	return s.links + "/login/" + slug + "/invitation#token=" + secret
}

// newLink stores a link for the user, ending the user's unused links of the
// same purpose, and returns its secret and end.
func (s *Service) newLink(ctx context.Context, tx *sqldb.Tx, tenantID, userID, purpose string, ttl time.Duration) (string, time.Time, error) {
	return s.newLinkWith(ctx, tx, tenantID, userID, purpose, ttl, nil)
}

// newLinkWith is newLink for a link that carries a sealed payload.
func (s *Service) newLinkWith(ctx context.Context, tx *sqldb.Tx, tenantID, userID, purpose string, ttl time.Duration, payload []byte) (string, time.Time, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, "UPDATE account_links SET expires_at = ? WHERE tenant_id = ? AND user_id = ? AND purpose = ? AND used_at = 0 AND expires_at > ?",
		now.UnixMicro(), tenantID, userID, purpose, now.UnixMicro()); err != nil {
		return "", time.Time{}, err
	}
	secret := newSecret()
	if payload == nil {
		payload = []byte{}
	}
	_, err = tx.Exec(ctx, `INSERT INTO account_links (tenant_id, id, user_id, purpose, hash, created_at, expires_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		tenantID, id.String(), userID, purpose, sha(secret), now.UnixMicro(), now.Add(ttl).UnixMicro(), payload)
	return secret, now.Add(ttl), err
}

// link is a live link with its account.
type link struct {
	id      string
	expires time.Time
	acct    *account
	payload []byte // sealed under the account's person's key; empty for most links
}

// findLink resolves a secret to its unused, unexpired link of purpose,
// whose tenant is active and whose user may still use it: an invitation
// only while the user has no password, a reset only while active.
func (s *Service) findLink(ctx context.Context, secret, purpose string) (*link, error) {
	if !keyring.WellFormedSecret(secret) {
		return nil, errLink
	}
	var l link
	var tenantID, userID string
	var expires, used int64
	err := s.db.Read().QueryRow(ctx, "SELECT tenant_id, id, user_id, expires_at, used_at, payload FROM account_links WHERE hash = ? AND purpose = ?",
		sha(secret), purpose).Scan(&tenantID, &l.id, &userID, &expires, &used, &l.payload)
	if errors.Is(err, sql.ErrNoRows) || err == nil && (used != 0 || s.now().UnixMicro() >= expires) {
		return nil, errLink
	}
	if err != nil {
		return nil, err
	}
	l.expires = micros(expires)
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	u, err := s.UserByID(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	if l.acct, err = s.account(ctx, tenantID, u); err != nil {
		return nil, err
	}
	ok := u.Status == StatusActive
	if purpose == linkInvite {
		ok = (u.Status == StatusInvited || u.Status == StatusActive) && l.acct.hash == ""
	}
	if t.Status != "active" || !ok {
		return nil, errLink
	}
	return &l, nil
}

// use marks the link used, inside the transaction that acts on it; of two
// concurrent uses exactly one succeeds.
func (s *Service) use(ctx context.Context, tx *sqldb.Tx, l *link) error {
	res, err := tx.Exec(ctx, "UPDATE account_links SET used_at = ? WHERE tenant_id = ? AND id = ? AND used_at = 0",
		s.now().UnixMicro(), l.acct.tenantID, l.id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.Join(errLink, err)
	}
	return nil
}

// setPassword stores a new password hash for the account.
func setPassword(ctx context.Context, tx *sqldb.Tx, a *account, hash string, now int64) error {
	_, err := tx.Exec(ctx, "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE tenant_id = ? AND id = ?",
		hash, now, a.tenantID, a.ID)
	return err
}

// Invitation asks someone to join the tenant.
type Invitation struct {
	Email string `json:"email"`
	Role  string `json:"role"` // default member
}

// Invite sends an invitation on behalf of p, who may not invite above
// their own role. The answer is the same whether or not the email already
// has an account: a new address gets an invited account and a link, an
// invited one a fresh link (the reminder), an active one a note that it
// already has an account; a suspended one gets nothing.
func (s *Service) Invite(ctx context.Context, p Principal, in Invitation) error {
	if in.Role == "" {
		in.Role = RoleMember
	}
	if err := validRole(in.Role); err != nil {
		return err
	}
	if rank(in.Role) > rank(p.Role) {
		return errs.E(errs.Forbidden, "a %s cannot invite someone as %s", p.Role, in.Role)
	}
	email, err := subject.NormalizeEmail(in.Email)
	if err != nil {
		return err
	}
	a, err := s.accountByEmail(ctx, p.TenantID, email)
	if errs.Is(err, errs.NotFound) {
		return s.inviteNew(ctx, p.TenantID, NewUser{Email: email, Role: in.Role}, "invitation")
	}
	if err != nil {
		return err
	}
	return s.remind(ctx, a, "user.invite", map[string]any{"role": in.Role, "existing": true})
}

// inviteNew makes an invited account for an address that has none and
// mails it an invitation, in one transaction.
func (s *Service) inviteNew(ctx context.Context, tenantID string, in NewUser, via string) error {
	_, err := s.createUser(ctx, tenantID, in, StatusInvited, func(tx *sqldb.Tx, u User) error {
		key, err := s.subjects.Key(ctx, tenantID, u.SubjectID)
		if err != nil {
			return err
		}
		return s.sendInvitation(ctx, tx, &account{User: u, tenantID: tenantID, email: in.Email, key: key})
	}, audit.Event{Action: "user.invite", Details: map[string]any{"role": in.Role, "via": via}})
	return err
}

// ResendInvitation sends an invited user a fresh link (the old one stops
// working). A user who has set a password has nothing to accept.
func (s *Service) ResendInvitation(ctx context.Context, p Principal, userID string) error {
	u, err := s.UserByID(ctx, p.TenantID, userID)
	if err != nil {
		return err
	}
	if rank(u.Role) > rank(p.Role) {
		return errs.E(errs.Forbidden, "a %s cannot invite an %s", p.Role, u.Role)
	}
	a, err := s.account(ctx, p.TenantID, u)
	if err != nil {
		return err
	}
	if a.hash != "" || u.Status == StatusSuspended {
		return errs.E(errs.Conflict, "this user has no invitation to accept: they have a password already or are suspended")
	}
	return s.remind(ctx, a, "user.invite.resend", nil)
}

// remind sends an existing account what an invitation to it means: a new
// link while it has no password, a note that it exists otherwise.
func (s *Service) remind(ctx context.Context, a *account, action string, details map[string]any) error {
	ev := audit.Event{Action: action, TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID, Details: details}
	switch {
	case a.Status == StatusSuspended:
		return s.log.Record(ctx, a.tenantID, ev)
	case a.hash != "":
		t, err := s.tenants.ByID(ctx, a.tenantID)
		if err != nil {
			return err
		}
		m := mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "invitation-existing", To: a.email,
			Subject: "You already have an account at " + t.Name,
			Text: fmt.Sprintf(`Hello,

Someone at %s invited this email address, which already has an account
there. Sign in as usual at %s/login (organisation: %s).
If you forgot your password, use "Forgot password" on that page.

— Custodia
`, t.Name, s.links, t.Slug)}
		return s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error { return s.mail.Queue(ctx, tx, a.key, m) }, ev)
	default:
		return s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error { return s.sendInvitation(ctx, tx, a) }, ev)
	}
}

// sendInvitation makes a new invitation link and queues it by mail.
func (s *Service) sendInvitation(ctx context.Context, tx *sqldb.Tx, a *account) error {
	t, err := s.tenants.ByID(ctx, a.tenantID)
	if err != nil {
		return err
	}
	secret, expires, err := s.newLink(ctx, tx, a.tenantID, a.ID, linkInvite, inviteTTL)
	if err != nil {
		return err
	}
	return s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "invitation", To: a.email,
		Subject: "You are invited to " + t.Name,
		Text: fmt.Sprintf(`Hello,

You are invited to join %s. Choose your password here:

%s

The link works once, until %s. If you did not expect this
invitation, ignore this email.

— Custodia
`, t.Name, s.linkURL(linkInvite, t.Slug, secret), expires.Format("2 January 2006 15:04 MST"))})
}

// SetupLink returns a one-time link with which a user who has no password
// yet chooses one — printed by the CLI for a new tenant's first owner.
// Any earlier invitation link of the user stops working.
func (s *Service) SetupLink(ctx context.Context, tenantID, userID string) (string, time.Time, error) {
	u, err := s.UserByID(ctx, tenantID, userID)
	if err != nil {
		return "", time.Time{}, err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return "", time.Time{}, err
	}
	var secret string
	var expires time.Time
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		var err error
		secret, expires, err = s.newLink(ctx, tx, tenantID, userID, linkInvite, inviteTTL)
		return err
	}, audit.Event{Action: "user.setup_link", TargetType: "user", TargetID: userID, SubjectID: u.SubjectID})
	return s.linkURL(linkInvite, t.Slug, secret), expires, err
}

// LinkInfo is what the holder of an invitation link may see before using it.
type LinkInfo struct {
	Tenant     string    `json:"tenant"`
	TenantName string    `json:"tenant_name"`
	Email      string    `json:"email"`
	ExpiresAt  time.Time `json:"expires_at"`
	Password   Policy    `json:"password"`
}

// Policy describes the password rules a new password must meet.
type Policy struct {
	Preset    string `json:"preset"`
	MinLength int    `json:"min_length"`
	MaxLength int    `json:"max_length"`
}

// Invitation returns what the invitation link with secret is for.
func (s *Service) Invitation(ctx context.Context, secret string) (LinkInfo, error) {
	l, err := s.findLink(ctx, secret, linkInvite)
	if err != nil {
		return LinkInfo{}, err
	}
	t, err := s.tenants.ByID(ctx, l.acct.tenantID)
	if err != nil {
		return LinkInfo{}, err
	}
	sec, err := s.SecuritySettings(ctx, t.ID)
	if err != nil {
		return LinkInfo{}, err
	}
	pol := sec.PasswordPolicy()
	return LinkInfo{Tenant: t.Slug, TenantName: t.Name, Email: l.acct.email, ExpiresAt: l.expires,
		Password: Policy{Preset: sec.PasswordPreset, MinLength: pol.MinLength(), MaxLength: password.Max}}, nil
}

// LinkInput is a password chosen through a one-time link.
type LinkInput struct {
	Secret   string
	Password string
	Device   string // the device cookie's secret, if any
	Client   Client
}

// AcceptInvitation sets the first password through an invitation (or
// setup) link, activates the account and signs it in: fully, or for
// enrolment only when the tenant demands a second factor of the role.
func (s *Service) AcceptInvitation(ctx context.Context, in LinkInput) (LoginResult, error) {
	l, hash, err := s.linkAndHash(ctx, in, linkInvite)
	if err != nil {
		return LoginResult{}, err
	}
	a := l.acct
	ctx = audit.WithActor(ctx, a.actor(in.Client))
	sec, err := s.SecuritySettings(ctx, a.tenantID)
	if err != nil {
		return LoginResult{}, err
	}
	state := stateFull
	if sec.mfaRequiredFor(a.Role) {
		state = stateEnrol
	}
	res := LoginResult{EnrolmentRequired: state == stateEnrol}
	err = s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := s.use(ctx, tx, l); err != nil {
			return err
		}
		// Only a first password: a password set meanwhile (by a reset) stays.
		upd, err := tx.Exec(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ?, status = ?
			WHERE tenant_id = ? AND id = ? AND password_hash = '' AND status IN (?, ?)`,
			hash, s.now().UnixMicro(), StatusActive, a.tenantID, a.ID, StatusInvited, StatusActive)
		if err != nil {
			return err
		}
		if n, err := upd.RowsAffected(); err != nil || n != 1 {
			return errors.Join(errLink, err)
		}
		if res.Session, res.ExpiresAt, err = s.startSession(ctx, tx, a, state, sec, in.Client); err != nil {
			return err
		}
		res.Device, err = s.signedIn(ctx, tx, a, budget{"users", a.ID}, in.Device)
		return err
	}, audit.Event{Action: "user.invitation.accept", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID,
		Details: map[string]any{"state": state}})
	return res, err
}

// linkAndHash checks a link and the password chosen through it.
func (s *Service) linkAndHash(ctx context.Context, in LinkInput, purpose string) (*link, string, error) {
	if in.Secret == "" {
		return nil, "", errs.Field("token", "required")
	}
	if in.Password == "" {
		return nil, "", errs.Field("password", "required")
	}
	l, err := s.findLink(ctx, in.Secret, purpose)
	if err != nil {
		return nil, "", err
	}
	hash, err := s.checkAndHash(ctx, l.acct.tenantID, l.acct.email, in.Password)
	return l, hash, err
}

// ResetRequest asks for a password reset link.
type ResetRequest struct {
	Tenant string
	Email  string
	Client Client
}

// RequestReset mails a 30-minute, single-use reset link to the account
// with this email, if there is an active one; the caller learns nothing
// either way. At most resetsPerHour links go out per account per hour.
func (s *Service) RequestReset(ctx context.Context, in ResetRequest) error {
	if in.Tenant == "" {
		return errs.Field("tenant", "required")
	}
	email, err := subject.NormalizeEmail(in.Email)
	if err != nil {
		return err
	}
	a, err := s.findAccount(ctx, in.Tenant, email)
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
		if t, terr := s.tenants.BySlug(ctx, in.Tenant); terr == nil {
			return s.log.Record(audit.WithActor(ctx, audit.Actor{Type: ActorAnonymous}), t.ID, audit.Event{
				Action: "user.password.reset.request", TargetType: "user", Outcome: audit.Failure,
				Details: map[string]any{"reason": "unknown account"}})
		}
		return nil
	}
	if err != nil {
		return err
	}
	ctx = audit.WithActor(ctx, a.actor(in.Client))
	ev := audit.Event{Action: "user.password.reset.request", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID}
	if a.Status != StatusActive {
		ev.Outcome, ev.Details = audit.Denied, map[string]any{"reason": a.Status}
		return s.log.Record(ctx, a.tenantID, ev)
	}
	var recent int
	if err := s.db.Read().QueryRow(ctx, "SELECT count(*) FROM account_links WHERE tenant_id = ? AND user_id = ? AND purpose = ? AND created_at > ?",
		a.tenantID, a.ID, linkReset, s.now().Add(-time.Hour).UnixMicro()).Scan(&recent); err != nil {
		return err
	}
	if recent >= resetsPerHour {
		ev.Outcome, ev.Details = audit.Denied, map[string]any{"reason": "too many reset links this hour"}
		return s.log.Record(ctx, a.tenantID, ev)
	}
	t, err := s.tenants.ByID(ctx, a.tenantID)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		secret, _, err := s.newLink(ctx, tx, a.tenantID, a.ID, linkReset, resetTTL)
		if err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "password-reset", To: a.email,
			Subject: "Reset your " + t.Name + " password",
			Text: fmt.Sprintf(`Hello,

Someone (hopefully you) asked to reset the password of your %s account.
Choose a new password here:

%s

The link works once, for 30 minutes. Your second factor, if you have one,
is still needed to sign in afterwards. If you did not ask for this, ignore
this email: your password stays as it is.

— Custodia
`, t.Name, s.linkURL(linkReset, t.Slug, secret))})
	}, ev)
}

// ResetPassword sets a new password through a reset link. It does not sign
// in — the second factor is still asked at the next sign-in — and it does
// not lift a lock. Every session of the user ends, and the user is told
// by mail.
func (s *Service) ResetPassword(ctx context.Context, in LinkInput) error {
	l, hash, err := s.linkAndHash(ctx, in, linkReset)
	if err != nil {
		return err
	}
	a := l.acct
	ctx = audit.WithActor(ctx, a.actor(in.Client))
	m, err := s.passwordChangedMail(ctx, a)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := s.use(ctx, tx, l); err != nil {
			return err
		}
		now := s.now().UnixMicro()
		if err := setPassword(ctx, tx, a, hash, now); err != nil {
			return err
		}
		if err := revokeSessions(ctx, tx, a.tenantID, a.ID, "", now); err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, m)
	}, audit.Event{Action: "user.password.reset", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID})
}

// revokeSessions ends the user's sessions except the one with id keep.
func revokeSessions(ctx context.Context, tx *sqldb.Tx, tenantID, userID, keep string, now int64) error {
	_, err := tx.Exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND id <> ? AND revoked_at = 0",
		now, tenantID, userID, keep)
	return err
}

func (s *Service) passwordChangedMail(ctx context.Context, a *account) (mail.Message, error) {
	t, err := s.tenants.ByID(ctx, a.tenantID)
	if err != nil {
		return mail.Message{}, err
	}
	return mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "password-changed", To: a.email,
		Subject: "Your " + t.Name + " password was changed",
		Text: fmt.Sprintf(`Hello,

The password of your %s account was just changed, and every session
signed in with the old one has ended.

If this was not you, contact an administrator of %s now.

— Custodia
`, t.Name, t.Name)}, nil
}

// TenantPolicy is the password policy of an organisation, as the pages
// that choose a password show it before anything is typed.
type TenantPolicy struct {
	Tenant     string
	TenantName string
	Password   Policy
}

// PolicyOf answers the password policy of the active tenant slug.
func (s *Service) PolicyOf(ctx context.Context, slug string) (TenantPolicy, error) {
	t, err := s.tenants.BySlug(ctx, slug)
	if err != nil || t.Status != "active" {
		return TenantPolicy{}, errs.E(errs.NotFound, "no such organisation")
	}
	sec, err := s.SecuritySettings(ctx, t.ID)
	if err != nil {
		return TenantPolicy{}, err
	}
	pol := sec.PasswordPolicy()
	return TenantPolicy{Tenant: t.Slug, TenantName: t.Name,
		Password: Policy{Preset: sec.PasswordPreset, MinLength: pol.MinLength(), MaxLength: password.Max}}, nil
}
