package ledger

import (
	"encoding/json"

	"github.com/custodia/custodia/internal/audit"
)

// Kinds are the audit actions the ledger records: every change that takes
// something away, which a restore must not bring back.
var Kinds = map[string]bool{
	"subject.erase":        true, // the person erased
	"subject.anonymise":    true, // the contact anonymised
	"consent.withdraw":     true, // a consent withdrawn (detail: purpose)
	"token.revoke":         true, // an API token revoked
	"session.revoke":       true, // a session ended
	"auth.logout":          true, // a session ended by signing out
	"user.password.change": true, // a password changed: the old one must not work again
	"user.password.reset":  true,
	"user.email.change":    true, // a sign-in address changed: the old one must not work again
	"mfa.remove":           true, // a second factor removed
	"user.mfa.reset":       true,
	"user.close":           true, // an account's closure asked for (detail: when)
	"user.close.cancel":    true, // … and called off: a replay must not close it
	"user.update":          true, // a role lowered, an account suspended (detail: role_to, status_to)
	"group.member.remove":  true, // someone taken out of a group (detail: user_id)
	"objection.open":       true, // an objection: processing for a purpose stops (detail: purpose)
	"objection.decide":     true, // … upheld or overridden (detail: purpose, decision)
	"subject.restrict":     true, // processing restricted
	"subject.unrestrict":   true, // … and the restriction lifted: replayed in order
	"space.revoke":         true, // a grant on a space revoked (detail: grant_id)
	"folder.revoke":        true, // a grant on a folder revoked (detail: grant_id)
	"file.purge":           true, // deleted for good (detail: space_id)
	"folder.purge":         true,
	"space.purge":          true,
	"keys.rotate":          true, // a tenant key rotated: a fact a restore reports (run it again)
}

// details are the event details a replay needs, by kind: ids and keys,
// never personal data.
var details = map[string][]string{
	"consent.withdraw":    {"purpose"},
	"objection.open":      {"purpose"},
	"objection.decide":    {"decision", "purpose"},
	"user.close":          {"closes_at"},
	"user.update":         {"role", "status"}, // [from, to]: kept as role_to, status_to
	"group.member.remove": {"user_id"},
	"space.revoke":        {"grant_id"},
	"folder.revoke":       {"grant_id"},
	"file.purge":          {"space_id"},
	"folder.purge":        {"space_id"},
	"space.purge":         {"space_id"},
}

// Follow answers the entries of the committed events the ledger records
// (audit.Options.Committed hands them over): successful changes of Kinds.
func Follow(events []audit.Committed) []Entry {
	var out []Entry
	for _, c := range events {
		if !Kinds[c.Action] || c.Outcome != audit.Success {
			continue
		}
		e := Entry{At: c.At, Kind: c.Action, Tenant: c.TenantID, Event: c.ID, Target: c.TargetID, Subject: c.SubjectID}
		if keys := details[c.Action]; len(keys) > 0 && c.Details != "" {
			var d map[string]any
			if json.Unmarshal([]byte(c.Details), &d) == nil {
				for _, k := range keys {
					v, ok := d[k].(string)
					if pair, isPair := d[k].([]any); isPair && len(pair) == 2 { // a change: [from, to]
						v, ok = pair[1].(string)
						k += "_to"
					}
					if ok {
						if e.Detail == nil {
							e.Detail = map[string]string{}
						}
						e.Detail[k] = v
					}
				}
			}
		}
		out = append(out, e)
	}
	return out
}
