package core

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ledger"
	"github.com/custodia/custodia/internal/subject"
)

// Replayed is what a restore replayed from the ledger, per tenant.
type Replayed struct {
	Applied  map[string]int // by kind: changes made again
	Already  int            // changes the restored data held already (made before the backup, or undone since)
	Recorded map[string]int // by kind: recorded, not replayed by this version yet
	Sessions int            // sessions ended (every one of before the restore)
}

// replays are the kinds this version applies again after a restore.
var replays = map[string]func(c *Core, ctx context.Context, e ledger.Entry) (bool, error){
	"subject.erase": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		_, err := c.Subjects.Erase(ctx, e.Tenant, e.Target, subject.EraseInput{Reason: "replayed from the ledger after a restore",
			Accounts: true, Details: map[string]any{"erased_at": time.UnixMicro(e.At).UTC().Format(time.RFC3339), "ledger_event": e.Event}})
		return gone(err)
	},
	"subject.anonymise": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		err := c.Subjects.Anonymise(ctx, e.Tenant, e.Target, nil, map[string]any{"reason": "replayed from the ledger after a restore", "ledger_event": e.Event})
		return gone(err)
	},
	"consent.withdraw": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		l, err := c.Consent.Ledger(ctx, e.Tenant, e.Subject)
		if applied, err := gone(err); err != nil || !applied {
			return applied, err
		}
		i := slices.IndexFunc(l.State, func(s consent.State) bool { return s.Purpose == e.Detail["purpose"] })
		if i < 0 || l.State[i].Status != "granted" || l.State[i].Since.After(time.UnixMicro(e.At)) {
			return false, nil // withdrawn already, or granted again after the withdrawal
		}
		_, err = c.Consent.Record(ctx, e.Tenant, e.Subject, consent.Input{Purpose: e.Detail["purpose"], Action: consent.Withdraw, Method: "api",
			Source: "replayed from the ledger after a restore"})
		return err == nil, err
	},
	"subject.restrict": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Subjects.ReplayRestriction(ctx, e.Tenant, e.Target, true)
	},
	"subject.unrestrict": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Subjects.ReplayRestriction(ctx, e.Tenant, e.Target, false)
	},
	"objection.open": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Rights.ReplayObjection(ctx, e.Tenant, e.Target, e.Detail["purpose"], "")
	},
	"objection.decide": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Rights.ReplayObjection(ctx, e.Tenant, e.Target, e.Detail["purpose"], e.Detail["decision"])
	},
	"token.revoke": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Identity.RevokeTokenID(ctx, e.Tenant, e.Target)
	},
	"space.revoke": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Spaces.ReplayRevoke(ctx, e.Tenant, e.Detail["grant_id"])
	},
	"folder.revoke": func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
		return c.Spaces.ReplayRevoke(ctx, e.Tenant, e.Detail["grant_id"])
	},
	// Sessions: every one is ended by the restore. A closure called off:
	// what a replay of the closure looks at.
	"session.revoke":    func(*Core, context.Context, ledger.Entry) (bool, error) { return false, nil },
	"auth.logout":       func(*Core, context.Context, ledger.Entry) (bool, error) { return false, nil },
	"user.close.cancel": func(*Core, context.Context, ledger.Entry) (bool, error) { return false, nil },
}

// accountReplays are the kinds the accounts' service makes again.
var accountReplays = []string{"user.password.change", "user.password.reset", "user.email.change", "mfa.remove",
	"user.mfa.reset", "user.update", "group.member.remove", "user.close"}

func init() {
	for _, kind := range []string{"file", "folder", "space"} {
		replays[kind+".purge"] = func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
			return c.Files.ReplayPurge(ctx, e.Tenant, kind, e.Target, e.Detail["space_id"])
		}
	}
	for _, kind := range accountReplays {
		replays[kind] = func(c *Core, ctx context.Context, e ledger.Entry) (bool, error) {
			return c.Identity.Replay(ctx, e.Tenant, e.Kind, e.Target, e.Detail)
		}
	}
}

// gone turns "the person is not there (any more)" into nothing to do.
func gone(err error) (bool, error) {
	if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Gone) {
		return false, nil
	}
	return err == nil, err
}

// Replay applies again, after a restore, every change of entries (the
// ledger) that took something away and that the restored database does
// not hold — its audit event is not in it — then ends every session, and
// records in each tenant's trail what it did (backup.replay). Kinds this
// version does not replay yet are counted and said.
func (c *Core) Replay(ctx context.Context, entries []ledger.Entry) (map[string]*Replayed, error) {
	ctx = audit.WithActor(ctx, audit.Actor{Type: audit.ActorSystem, ID: "restore"})
	out := map[string]*Replayed{}
	of := func(tenantID string) *Replayed {
		if out[tenantID] == nil {
			out[tenantID] = &Replayed{Applied: map[string]int{}, Recorded: map[string]int{}}
		}
		return out[tenantID]
	}
	// A closure called off after it was asked for is not made again.
	cancelled := map[string]int64{}
	for _, e := range entries {
		if e.Kind == "user.close.cancel" {
			cancelled[e.Tenant+"/"+e.Target] = max(cancelled[e.Tenant+"/"+e.Target], e.At)
		}
	}
	for _, e := range entries {
		r := of(e.Tenant)
		if e.Kind == "user.close" && cancelled[e.Tenant+"/"+e.Target] > e.At {
			r.Already++
			continue
		}
		var one int
		err := c.DB.Read().QueryRow(ctx, "SELECT 1 FROM audit_events WHERE tenant_id = ? AND id = ?", e.Tenant, e.Event).Scan(&one)
		if err == nil {
			r.Already++
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return out, err
		}
		apply, ok := replays[e.Kind]
		if !ok {
			r.Recorded[e.Kind]++
			continue
		}
		applied, err := apply(c, ctx, e)
		if err != nil {
			return out, fmt.Errorf("replay %s of %s (ledger entry %d of node %s): %w", e.Kind, e.Target, e.Seq, e.Node, err)
		}
		if applied {
			r.Applied[e.Kind]++
		} else {
			r.Already++
		}
	}
	ids, err := c.Tenants.ActiveIDs(ctx)
	if err != nil {
		return out, err
	}
	for _, id := range ids {
		r := of(id)
		if r.Sessions, err = c.Identity.EndAllSessions(ctx, id); err != nil {
			return out, err
		}
		details := map[string]any{"applied": r.Applied, "already": r.Already, "sessions_ended": r.Sessions}
		if len(r.Recorded) > 0 {
			details["not_replayed_yet"] = r.Recorded
		}
		if err := c.Log.Record(ctx, id, audit.Event{Action: "backup.replay", TargetType: "tenant", TargetID: id, Details: details}); err != nil {
			return out, err
		}
	}
	return out, nil
}
