package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
)

// A sign-in address changes only when the new address confirms it, through
// a link mailed there; the old address is then told, with a link that
// undoes the change ("it was not me"): the old address comes back, every
// session and token of the account ends, it needs a new password (a reset
// link goes to the old address), and the tenant's owners are told.
const (
	linkEmail     = "email"
	linkEmailUndo = "email-undo"

	emailTTL     = 24 * time.Hour
	emailUndoTTL = 30 * 24 * time.Hour
)

// EmailLink is what a page shows about a link on a sign-in address.
type EmailLink struct {
	Organisation string
	Tenant       string // the organisation's slug
	Address      string // the address the link sets: the new one, or the old one back
	ExpiresAt    time.Time
}

// sealAddress seals an address carried by u's link of purpose, under the
// person's key: an erasure shreds it with everything else.
func sealAddress(a *account, purpose, email string) []byte {
	return a.key.Seal("account_links", "payload", a.ID+"/"+purpose, []byte(email))
}

func openAddress(l *link, purpose string) (string, error) {
	b, err := l.acct.key.Open("account_links", "payload", l.acct.ID+"/"+purpose, l.payload)
	return string(b), err
}

// requestEmailChange mails newEmail a link that makes it u's sign-in
// address; until it is used nothing changes. A newer request ends the
// older one's link.
func (s *Service) requestEmailChange(ctx context.Context, tenantID string, u User, newEmail string) error {
	a, err := s.account(ctx, tenantID, u)
	if err != nil {
		return err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return err
	}
	return s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		secret, expires, err := s.newLinkWith(ctx, tx, tenantID, u.ID, linkEmail, emailTTL, sealAddress(a, linkEmail, newEmail))
		if err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: tenantID, SubjectID: u.SubjectID, Kind: "email-confirm", To: newEmail,
			Subject: "Confirm your new sign-in address for " + t.Name,
			Text: fmt.Sprintf(`Hello,

This address is to become the one you sign in to %s with. Confirm it here:

%s

The link works once, until %s. Until then your sign-in address stays
as it was. If you did not expect this email, ignore it.

— Custodia
`, t.Name, s.linkURL(linkEmail, "", secret), expires.Format("2 January 2006 15:04 MST"))})
	}, audit.Event{Action: "user.email.request", TargetType: "user", TargetID: u.ID, SubjectID: u.SubjectID})
}

// ChangeOwnEmail asks, for p, to make email p's sign-in address: like an
// admin's change, it takes effect only through the link mailed to it. It
// answers whether a link was sent (not when the address is already p's).
func (s *Service) ChangeOwnEmail(ctx context.Context, p Principal, email string) (bool, error) {
	if p.TokenID != "" {
		return false, errs.E(errs.Forbidden, "a sign-in address is changed by its holder, signed in; API tokens cannot do it")
	}
	u, err := s.UserByID(ctx, p.TenantID, p.UserID)
	if err != nil {
		return false, err
	}
	sp, err := s.checkProfile(ctx, p.TenantID, u, nil, &email)
	if err != nil {
		return false, err
	}
	current, _, err := s.subjects.Email(ctx, p.TenantID, u.SubjectID)
	if err != nil || sp.Email.Value == current {
		return false, err
	}
	return true, s.requestEmailChange(ctx, p.TenantID, u, sp.Email.Value)
}

// EmailLinkInfo answers what the page of an address link shows (purpose
// "confirm" or "undo"), without using it.
func (s *Service) EmailLinkInfo(ctx context.Context, secret, purpose string) (EmailLink, error) {
	kind := linkEmail
	if purpose == "undo" {
		kind = linkEmailUndo
	}
	l, info, err := s.emailLink(ctx, secret, kind)
	if err != nil {
		return EmailLink{}, err
	}
	info.ExpiresAt = l.expires
	return info, nil
}

// emailLink finds the live address link secret of kind, and what it
// carries: the address it sets and the organisation's name.
func (s *Service) emailLink(ctx context.Context, secret, kind string) (*link, EmailLink, error) {
	l, err := s.findLink(ctx, secret, kind)
	if err != nil {
		return nil, EmailLink{}, err
	}
	addr, err := openAddress(l, kind)
	if err != nil {
		return nil, EmailLink{}, err
	}
	t, err := s.tenants.ByID(ctx, l.acct.tenantID)
	if err != nil {
		return nil, EmailLink{}, err
	}
	return l, EmailLink{Organisation: t.Name, Tenant: t.Slug, Address: addr}, nil
}

// ConfirmEmail makes the address a confirmation link carries the
// account's sign-in address, and tells the old address, with a link that
// undoes the change.
func (s *Service) ConfirmEmail(ctx context.Context, secret string, c Client) (EmailLink, error) {
	l, info, err := s.emailLink(ctx, secret, linkEmail)
	if err != nil {
		return EmailLink{}, err
	}
	a, newEmail := l.acct, info.Address
	ctx = audit.WithActor(ctx, a.actor(c))
	change, err := s.addressChange(ctx, a, newEmail)
	if err != nil {
		return EmailLink{}, err
	}
	err = s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := s.use(ctx, tx, l); err != nil {
			return err
		}
		if err := change.Apply(ctx, tx); err != nil {
			return err
		}
		secret, expires, err := s.newLinkWith(ctx, tx, a.tenantID, a.ID, linkEmailUndo, emailUndoTTL, sealAddress(a, linkEmailUndo, a.email))
		if err != nil {
			return err
		}
		return s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "email-changed", To: a.email,
			Subject: "Your sign-in address for " + info.Organisation + " was changed",
			Text: fmt.Sprintf(`Hello,

The address you sign in to %s with was changed from this one to
%s.

If this was not you, undo it here: your address comes back, every
session ends and you choose a new password.

%s

The link works once, until %s.

— Custodia
`, info.Organisation, newEmail, s.linkURL(linkEmailUndo, "", secret), expires.Format("2 January 2006 15:04 MST"))})
	}, append(change.Events, audit.Event{Action: "user.email.change", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID})...)
	return info, err
}

// UndoEmail puts back the address an undo link carries, ends every
// session and token of the account, clears its password (a reset link goes
// to the address put back) and tells the tenant's owners.
func (s *Service) UndoEmail(ctx context.Context, secret string, c Client) (EmailLink, error) {
	l, info, err := s.emailLink(ctx, secret, linkEmailUndo)
	if err != nil {
		return EmailLink{}, err
	}
	a, old, org := l.acct, info.Address, info.Organisation
	owners, err := s.owners(ctx, a.tenantID)
	if err != nil {
		return EmailLink{}, err
	}
	ctx = audit.WithActor(ctx, a.actor(c))
	change, err := s.addressChange(ctx, a, old)
	if err != nil {
		return EmailLink{}, err
	}
	err = s.log.Commit(ctx, a.tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		if err := s.use(ctx, tx, l); err != nil {
			return err
		}
		if err := change.Apply(ctx, tx); err != nil {
			return err
		}
		now := s.now().UnixMicro()
		if err := setPassword(ctx, tx, a, "", now); err != nil {
			return err
		}
		if err := revokeSessions(ctx, tx, a.tenantID, a.ID, "", now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE api_tokens SET revoked_at = ? WHERE tenant_id = ? AND user_id = ? AND revoked_at = 0", now, a.tenantID, a.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE account_links SET expires_at = ? WHERE tenant_id = ? AND user_id = ? AND purpose = ? AND used_at = 0",
			now, a.tenantID, a.ID, linkEmail); err != nil {
			return err
		}
		secret, expires, err := s.newLink(ctx, tx, a.tenantID, a.ID, linkReset, resetTTL)
		if err != nil {
			return err
		}
		if err := s.mail.Queue(ctx, tx, a.key, mail.Message{TenantID: a.tenantID, SubjectID: a.SubjectID, Kind: "email-undone", To: old,
			Subject: "Your sign-in address for " + org + " is yours again",
			Text: fmt.Sprintf(`Hello,

The change of your sign-in address for %s is undone: you sign in with
this address again. Every session and API token of your account has
ended, and your password no longer works. Choose a new one here:

%s

The link works once, until %s.

— Custodia
`, org, s.linkURL(linkReset, info.Tenant, secret), expires.Format("2 January 2006 15:04 MST"))}); err != nil {
			return err
		}
		for _, o := range owners {
			if err := s.mail.Queue(ctx, tx, o.key, mail.Message{TenantID: a.tenantID, SubjectID: o.SubjectID, Kind: "email-undone-owner", To: o.email,
				Subject: "A sign-in address change was undone at " + org,
				Text: fmt.Sprintf(`Hello,

The holder of account %s at %s said that a change of its sign-in
address was not theirs, and undid it. The account's sessions and API
tokens have ended and it needs a new password. Look at the audit trail
(user.email.*) for who asked for the change.

— Custodia
`, a.ID, org)}); err != nil {
				return err
			}
		}
		return nil
	}, append(change.Events, audit.Event{Action: "user.email.undo", TargetType: "user", TargetID: a.ID, SubjectID: a.SubjectID})...)
	return info, err
}

// addressChange prepares making email a's sign-in address, to be applied
// in the same unit as spending the link that asks for it — unless another
// person of the tenant has the address.
func (s *Service) addressChange(ctx context.Context, a *account, email string) (subject.Change, error) {
	switch other, err := s.subjects.IDByEmail(ctx, s.db.Read(), a.tenantID, email); {
	case err == nil && other != a.SubjectID:
		return subject.Change{}, errs.Field("email", "another person in this organisation has this address now")
	case err != nil && !errs.Is(err, errs.NotFound):
		return subject.Change{}, err
	}
	return s.subjects.PrepareAccountChange(ctx, a.tenantID, a.SubjectID, subject.Patch{Email: subject.Optional[string]{Set: true, Value: email}})
}

// owners are the tenant's active owners, to be told.
func (s *Service) owners(ctx context.Context, tenantID string) ([]*account, error) {
	us, err := s.users(ctx, "tenant_id = ? AND role = ? AND status = ?", tenantID, RoleOwner, StatusActive)
	if err != nil {
		return nil, err
	}
	out := make([]*account, 0, len(us))
	for _, u := range us {
		a, err := s.account(ctx, tenantID, u)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
