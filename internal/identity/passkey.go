package identity

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Passkeys (WebAuthn) as a second factor. A ceremony's challenge lives 5
// minutes, is bound to the session that asked for it and is answered at
// most once. A user may hold up to 10 passkeys.
const (
	passkeyTTL        = 5 * time.Minute
	maxPasskeys       = 10
	maxPasskeyName    = 64
	maxCredentialJSON = 64 << 10 // a registration response with attestation certificates stays well under this

	purposeRegister = "register"
	purposeSignIn   = "sign-in"
)

// newRelyingParty configures WebAuthn for the public URL: its host is the
// relying party ID, its origin the only one accepted. Attestation is not
// asked for (a second factor needs no proof of the authenticator's make);
// resident keys are discouraged, so security keys' few slots are not used
// up by a factor that never has to find its account by itself.
func newRelyingParty(publicURL string) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(publicURL)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Hostname()
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443" || u.Scheme == "http" && p == "80") {
		origin += ":" + p
	}
	timeouts := webauthn.TimeoutConfig{Enforce: true, Timeout: passkeyTTL, TimeoutUVD: passkeyTTL}
	return webauthn.New(&webauthn.Config{
		RPID:                  u.Hostname(),
		RPDisplayName:         "Custodia",
		RPOrigins:             []string{origin},
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementDiscouraged,
			UserVerification: protocol.VerificationPreferred,
		},
		Timeouts: webauthn.TimeoutsConfig{Login: timeouts, Registration: timeouts},
	})
}

// relyingParty returns the WebAuthn configuration, or why there is none.
func (s *Service) relyingParty() (*webauthn.WebAuthn, error) {
	if s.rpErr != nil {
		return nil, errs.Wrap(errs.Conflict, s.rpErr,
			"passkeys need the server's public URL to name a host, not an IP address (--public-url https://custodia.example.org)")
	}
	return s.rp, nil
}

// passkeyUser is an account as WebAuthn sees it. The user handle is the
// user id: random, and no personal data.
type passkeyUser struct {
	id, name string
	creds    []webauthn.Credential
	factors  []string // factor id of creds[i]
}

func (u *passkeyUser) WebAuthnID() []byte                         { return []byte(u.id) }
func (u *passkeyUser) WebAuthnName() string                       { return u.name }
func (u *passkeyUser) WebAuthnDisplayName() string                { return u.name }
func (u *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// factorOf returns the factor holding the credential with id credID.
func (u *passkeyUser) factorOf(credID []byte) (string, webauthn.Credential, bool) {
	for i, c := range u.creds {
		if bytes.Equal(c.ID, credID) {
			return u.factors[i], c, true
		}
	}
	return "", webauthn.Credential{}, false
}

// passkeyUserOf loads the user's confirmed passkeys, each with the
// signature counter last seen.
func (s *Service) passkeyUserOf(ctx context.Context, tenantID, userID, name string, key *keyring.DataKey) (*passkeyUser, error) {
	rows, err := s.db.Read().Query(ctx, `SELECT id, secret_ct, last_step FROM mfa_factors
		WHERE tenant_id = ? AND user_id = ? AND kind = ? AND confirmed_at <> 0 ORDER BY id`, tenantID, userID, MethodPasskey)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	u := &passkeyUser{id: userID, name: name}
	for rows.Next() {
		var id string
		var ct []byte
		var count int64
		if err := rows.Scan(&id, &ct, &count); err != nil {
			return nil, err
		}
		pt, err := key.Open("mfa_factors", "secret_ct", id, ct)
		if err != nil {
			return nil, err
		}
		var c webauthn.Credential
		if err := json.Unmarshal(pt, &c); err != nil {
			return nil, fmt.Errorf("passkey %s: %w", id, err)
		}
		c.Authenticator.SignCount = uint32(count)
		u.creds, u.factors = append(u.creds, c), append(u.factors, id)
	}
	return u, rows.Err()
}

// ceremony is the server's half of a WebAuthn ceremony, stored sealed.
type ceremony struct {
	Session  webauthn.SessionData `json:"session"`
	FactorID string               `json:"factor_id,omitempty"` // registration: the factor to be
	Name     string               `json:"name,omitempty"`      // registration: the passkey's name
}

// putCeremony stores c for the session and purpose, replacing an older
// one, and drops ceremonies that have expired anywhere.
func (s *Service) putCeremony(ctx context.Context, tenantID, sessionID, purpose string, key *keyring.DataKey, c ceremony) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	now := s.now()
	return s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM passkey_challenges WHERE expires_at <= ? OR tenant_id = ? AND session_id = ? AND purpose = ?",
			now.UnixMicro(), tenantID, sessionID, purpose); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO passkey_challenges (tenant_id, session_id, purpose, data_ct, expires_at) VALUES (?, ?, ?, ?, ?)",
			tenantID, sessionID, purpose, key.Seal("passkey_challenges", "data_ct", sessionID+"/"+purpose, data), now.Add(passkeyTTL).UnixMicro())
		return err
	})
}

// takeCeremony removes and returns the session's live ceremony of purpose:
// one DELETE … RETURNING, so of two answers to one challenge only one gets it.
func (s *Service) takeCeremony(ctx context.Context, tenantID, sessionID, purpose string, key *keyring.DataKey) (ceremony, error) {
	var ct []byte
	var expires int64
	err := s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, "DELETE FROM passkey_challenges WHERE tenant_id = ? AND session_id = ? AND purpose = ? RETURNING data_ct, expires_at",
			tenantID, sessionID, purpose).Scan(&ct, &expires)
	})
	if errors.Is(err, sql.ErrNoRows) || err == nil && expires <= s.now().UnixMicro() {
		start := "POST /api/v1/me/mfa/passkey"
		if purpose == purposeSignIn {
			start = "POST /api/v1/auth/mfa/passkey"
		}
		return ceremony{}, errs.E(errs.Conflict, "no passkey challenge is waiting for this session, or it has expired or been answered: %s first", start)
	}
	if err != nil {
		return ceremony{}, err
	}
	pt, err := key.Open("passkey_challenges", "data_ct", sessionID+"/"+purpose, ct)
	if err != nil {
		return ceremony{}, err
	}
	var c ceremony
	return c, json.Unmarshal(pt, &c)
}

// webauthnReason is what a refused WebAuthn response may tell the client:
// the library's short description, never its debug information.
func webauthnReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	var ue *protocol.ErrorUnknownCredential
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Details
	}
	return "not a valid WebAuthn response"
}

// EnrolPasskey starts registering a passkey named name for the principal's
// session: it returns the options for navigator.credentials.create (as
// PublicKeyCredentialCreationOptionsJSON under "publicKey"); ConfirmPasskey
// takes the authenticator's answer.
func (s *Service) EnrolPasskey(ctx context.Context, p Principal, name string) (*protocol.CredentialCreation, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	if p.SessionID == "" {
		return nil, errs.E(errs.Forbidden, "passkeys are set up from a signed-in session")
	}
	name = strings.TrimSpace(name)
	if name == "" {
		name = "Passkey"
	}
	if utf8.RuneCountInString(name) > maxPasskeyName || strings.ContainsFunc(name, isControl) {
		return nil, errs.Field("name", "at most %d characters, no control characters", maxPasskeyName)
	}
	email, key, err := s.subjects.Email(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return nil, err
	}
	u, err := s.passkeyUserOf(ctx, p.TenantID, p.UserID, email, key)
	if err != nil {
		return nil, err
	}
	if len(u.creds) >= maxPasskeys {
		return nil, errs.E(errs.Conflict, "this account has %d passkeys, the most it may hold: remove one first", maxPasskeys)
	}
	creation, sd, err := rp.BeginRegistration(u, webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()))
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	if err := s.putCeremony(ctx, p.TenantID, p.SessionID, purposeRegister, key, ceremony{Session: *sd, FactorID: id.String(), Name: name}); err != nil {
		return nil, err
	}
	err = s.log.Record(ctx, p.TenantID, audit.Event{Action: "mfa.enrol", TargetType: "factor", TargetID: id.String(),
		SubjectID: p.SubjectID, Details: map[string]any{"kind": MethodPasskey}})
	return creation, err
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ConfirmPasskey checks the authenticator's answer to the session's
// registration challenge (origin, relying party, challenge, signature of
// the attestation, user presence) and makes the new passkey count (see
// confirmFactor).
func (s *Service) ConfirmPasskey(ctx context.Context, p Principal, response []byte) (Confirmation, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return Confirmation{}, err
	}
	parsed, err := parseCredential(response, protocol.ParseCredentialCreationResponseBytes)
	if err != nil {
		return Confirmation{}, err
	}
	email, key, err := s.subjects.Email(ctx, p.TenantID, p.SubjectID)
	if err != nil {
		return Confirmation{}, err
	}
	c, err := s.takeCeremony(ctx, p.TenantID, p.SessionID, purposeRegister, key)
	if err != nil {
		return Confirmation{}, err
	}
	u, err := s.passkeyUserOf(ctx, p.TenantID, p.UserID, email, key)
	if err != nil {
		return Confirmation{}, err
	}
	cred, err := rp.CreateCredential(u, c.Session, parsed)
	if err == nil {
		if _, _, dup := u.factorOf(cred.ID); dup {
			err = &protocol.Error{Details: "this passkey is already registered"}
		}
	}
	if err != nil {
		_ = s.log.Record(ctx, p.TenantID, audit.Event{Action: "mfa.confirm", TargetType: "factor", TargetID: c.FactorID,
			SubjectID: p.SubjectID, Outcome: audit.Failure, Details: map[string]any{"kind": MethodPasskey, "reason": webauthnReason(err)}})
		return Confirmation{}, errs.Field("credential", "was not accepted: %s", webauthnReason(err))
	}
	record, err := json.Marshal(cred)
	if err != nil {
		return Confirmation{}, err
	}
	return s.confirmFactor(ctx, p, c.FactorID, MethodPasskey, func(ctx context.Context, tx *sqldb.Tx) error {
		now := s.now().UnixMicro()
		_, err := tx.Exec(ctx, `INSERT INTO mfa_factors (tenant_id, id, user_id, kind, secret_ct, label_ct, last_step, confirmed_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.TenantID, c.FactorID, p.UserID, MethodPasskey,
			key.Seal("mfa_factors", "secret_ct", c.FactorID, record), key.Seal("mfa_factors", "label_ct", c.FactorID, []byte(c.Name)),
			int64(cred.Authenticator.SignCount), now, now)
		return err
	})
}

// parseCredential bounds and parses a client's WebAuthn response.
func parseCredential[T any](response []byte, parse func([]byte) (T, error)) (T, error) {
	var zero T
	if len(bytes.TrimSpace(response)) == 0 || bytes.Equal(bytes.TrimSpace(response), []byte("null")) {
		return zero, errs.Field("credential", "required: the PublicKeyCredential from the browser, as JSON")
	}
	if len(response) > maxCredentialJSON {
		return zero, errs.Field("credential", "too large")
	}
	parsed, err := parse(response)
	if err != nil {
		return zero, errs.Field("credential", "is not a WebAuthn response: %s", webauthnReason(err))
	}
	return parsed, nil
}

// BeginPasskeySignIn returns the options for navigator.credentials.get
// (PublicKeyCredentialRequestOptionsJSON under "publicKey") for the user
// of a session that waits for its second factor or re-authenticates. The
// answer goes to CompleteMFA or Reauthenticate with method passkey.
func (s *Service) BeginPasskeySignIn(ctx context.Context, sessionSecret string) (*protocol.CredentialAssertion, error) {
	ss, err := s.findSession(ctx, sessionSecret)
	if err != nil {
		return nil, err
	}
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	email, key, err := s.subjects.Email(ctx, ss.tenantID, ss.user.SubjectID)
	if err != nil {
		return nil, err
	}
	u, err := s.passkeyUserOf(ctx, ss.tenantID, ss.userID, email, key)
	if err != nil {
		return nil, err
	}
	if len(u.creds) == 0 {
		return nil, errs.E(errs.Conflict, "this account has no passkey")
	}
	assertion, sd, err := rp.BeginLogin(u)
	if err != nil {
		return nil, err
	}
	return assertion, s.putCeremony(ctx, ss.tenantID, ss.id, purposeSignIn, key, ceremony{Session: *sd})
}

// usePasskey checks an assertion against the session's sign-in challenge
// (used up whatever the outcome) and the account's passkeys. The
// signature counter must grow when the authenticator keeps one: a
// conditional UPDATE, so a replayed or cloned assertion loses.
func (s *Service) usePasskey(ctx context.Context, a *account, sessionID string, response []byte) (bool, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return false, err
	}
	parsed, err := parseCredential(response, protocol.ParseCredentialRequestResponseBytes)
	if err != nil {
		return false, err
	}
	c, err := s.takeCeremony(ctx, a.tenantID, sessionID, purposeSignIn, a.key)
	if err != nil {
		return false, err
	}
	u, err := s.passkeyUserOf(ctx, a.tenantID, a.ID, a.email, a.key)
	if err != nil {
		return false, err
	}
	cred, err := rp.ValidateLogin(u, c.Session, parsed)
	if err != nil {
		return false, nil
	}
	factor, stored, _ := u.factorOf(cred.ID)
	if cred.Authenticator.CloneWarning {
		return false, s.log.Record(ctx, a.tenantID, audit.Event{Action: "mfa.passkey.counter", TargetType: "factor", TargetID: factor,
			SubjectID: a.SubjectID, Outcome: audit.Denied, Details: map[string]any{"stored": stored.Authenticator.SignCount,
				"presented": parsed.Response.AuthenticatorData.Counter}})
	}
	if cred.Authenticator.SignCount == 0 {
		return true, nil // an authenticator without a counter (synced passkeys): the single-use challenge is the replay guard
	}
	var used bool
	err = s.db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE mfa_factors SET last_step = ? WHERE tenant_id = ? AND id = ? AND last_step < ?",
			int64(cred.Authenticator.SignCount), a.tenantID, factor, int64(cred.Authenticator.SignCount))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		used = n == 1
		return err
	})
	return used, err
}
