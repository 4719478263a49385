package identity

import (
	"context"

	"github.com/custodia/custodia/internal/subject"
)

// accountTables hold rows about an account, by user_id.
var accountTables = []string{"sessions", "devices", "mfa_factors", "recovery_codes", "api_tokens", "account_links",
	"group_members", "sms_codes", "user_name_words"}

// Eraser is identity's part of erasing a person who has an account
// (subject.Eraser), registered last so that the other parts see the
// account whole: its sign-in state, factors, tokens, links and group
// memberships go, then the account. A contact has none of these.
func (s *Service) Eraser() subject.Eraser {
	return subject.Eraser{Name: "identity", Tables: []string{"users"}, Erase: func(ctx context.Context, e *subject.Erasure) (func(context.Context), error) {
		if e.UserID == "" {
			return nil, nil
		}
		if err := e.Delete(ctx, "passkey_challenges", "session_id IN (SELECT id FROM sessions WHERE tenant_id = ? AND user_id = ?)", e.TenantID, e.UserID); err != nil {
			return nil, err
		}
		for _, t := range accountTables {
			if err := e.Delete(ctx, t, "user_id = ?", e.UserID); err != nil {
				return nil, err
			}
		}
		return nil, e.Delete(ctx, "users", "id = ?", e.UserID)
	}}
}
