package rights_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// TestQuery: the requests list filters by type, channel, assignee and
// whether the identity check is done, pages by deadline with a cursor
// that survives ties, counts the matches, and exports them all as CSV
// (the export audited).
func TestQuery(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		tid := env.Tenant.ID
		svc := env.Core.Rights
		var ids []string
		for i := range 7 {
			typ, channel := "access", "email"
			if i%2 == 1 {
				typ, channel = "erasure", "phone"
			}
			r, err := svc.Create(ctx, tid, rights.Input{Type: typ, Channel: channel, Email: fmt.Sprintf("p%d@example.org", i)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
			if i == 3 {
				env.Now.Advance(24 * time.Hour) // a later deadline for the rest
			}
		}
		who := env.AddUser(t, "ada@acme.example", "admin", coretest.Password).ID
		if _, err := svc.Update(ctx, tid, ids[0], rights.Change{Status: rights.Verified, AssigneeID: &who}); err != nil {
			t.Fatal(err)
		}
		yes, no := true, false
		for name, c := range map[string]struct {
			f    rights.Filter
			want int
		}{
			"all":        {rights.Filter{}, 7},
			"erasure":    {rights.Filter{Type: "erasure"}, 3},
			"by phone":   {rights.Filter{Channel: "phone"}, 3},
			"assigned":   {rights.Filter{Assignee: who}, 1},
			"unassigned": {rights.Filter{Assignee: "none"}, 6},
			"verified":   {rights.Filter{Verified: &yes}, 1},
			"unverified": {rights.Filter{Verified: &no, Status: "open"}, 6},
		} {
			var got []string
			f := c.f
			f.Limit = 2
			for {
				p, err := svc.Query(ctx, tid, f)
				if err != nil {
					t.Fatal(err)
				}
				if p.Total != c.want || p.TotalMore {
					t.Errorf("%s: total %d (more %v); want %d", name, p.Total, p.TotalMore, c.want)
				}
				for _, r := range p.Items {
					got = append(got, r.ID)
				}
				if p.NextCursor == "" {
					break
				}
				f.Cursor = p.NextCursor
			}
			if len(got) != c.want {
				t.Errorf("%s: %d by pages of 2; want %d", name, len(got), c.want)
			}
			if name == "all" && fmt.Sprint(got[4:]) != fmt.Sprint(ids[4:]) {
				t.Errorf("the later deadlines last, in order: %v; want %v", got[4:], ids[4:])
			}
		}
		for _, f := range []rights.Filter{{Type: "gossip"}, {Channel: "pigeon"}, {Cursor: "nope"}, {Limit: 1001}} {
			if _, err := svc.Query(ctx, tid, f); !errs.Is(err, errs.Invalid) {
				t.Errorf("%+v: %v", f, err)
			}
		}
		var b bytes.Buffer
		if err := svc.WriteCSV(ctx, &b, tid, rights.Filter{Type: "erasure"}); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil || len(rows) != 4 || rows[1][1] != "erasure" || rows[1][3] != "phone" {
			t.Errorf("csv %v %v", rows, err)
		}
		es, _, err := audit.NewReader(env.Core.DB, env.Core.Keys).Query(ctx, tid, audit.Filter{Action: "request.export"})
		if err != nil || len(es) != 1 {
			t.Errorf("the export's audit events: %d %v", len(es), err)
		}
	})
}

// TestRejectionIsTold: a rejected request is told to the person by mail,
// with the reason and where they may complain (Art. 12(4)).
func TestRejectionIsTold(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		r, err := env.Core.Rights.Create(ctx, env.Tenant.ID, rights.Input{Type: "access", Channel: "email", Email: "ann@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Core.Rights.Update(ctx, env.Tenant.ID, r.ID, rights.Change{Status: rights.Rejected, ReasonCode: "identity_not_verified"}); err != nil {
			t.Fatal(err)
		}
		m := env.Mail.Wait(t, "ann@example.org", "cannot act on your request", 10*time.Second)
		if !strings.Contains(m.Text, "We could not verify that the request came from you.") || !strings.Contains(m.Text, "supervisory authority") {
			t.Errorf("the mail: %s", m.Text)
		}
	})
}
