package space_test

import (
	"context"
	"testing"

	"github.com/custodia/custodia/internal/core/coretest"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/identity"
	"github.com/custodia/custodia/internal/space"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// principal returns how a user of env's tenant acts (as a session would).
func principal(t *testing.T, env *coretest.Env, u identity.User) identity.Principal {
	t.Helper()
	return identity.Principal{TenantID: env.Tenant.ID, UserID: u.ID, SubjectID: u.SubjectID, Role: u.Role, Scopes: identity.RoleScopes(u.Role)}
}

// TestAccessIsTheHighestGrant walks one member through no grant, a group's
// viewer grant, an own editor grant, and back.
func TestAccessIsTheHighestGrant(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids, sps := env.Core.Identity, env.Core.Spaces
		admin := principal(t, env, env.AddUser(t, "ad@acme.example", "admin", ""))
		maker := principal(t, env, env.AddUser(t, "mk@acme.example", "member", ""))
		mo := env.AddUser(t, "mo@acme.example", "member", "")
		me := principal(t, env, mo)

		name := "Client: Jane Doe"
		sp, err := sps.Create(ctx, maker, name, "")
		if err != nil || sp.Access != space.Editor || sp.Region != env.Tenant.Region {
			t.Fatalf("create: %+v %v", sp, err)
		}
		access := func(want string) {
			t.Helper()
			got, err := sps.AccessOf(ctx, me, sp.ID)
			if err != nil || got != want {
				t.Fatalf("access %q, %v; want %q", got, err, want)
			}
			list, err := sps.List(ctx, me)
			if err != nil {
				t.Fatal(err)
			}
			if want == space.None && len(list) != 0 || want != space.None && (len(list) != 1 || list[0].Access != want || list[0].Name != name) {
				t.Errorf("list %+v; want the space with %q", list, want)
			}
		}
		access(space.None) // deny by default
		if _, err := sps.Get(ctx, me, sp.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("get without a grant: %v", err)
		}

		g, err := ids.CreateGroup(ctx, admin, "Accounts")
		if err != nil {
			t.Fatal(err)
		}
		if err := ids.SetMember(ctx, admin, g.ID, mo.ID, false); err != nil {
			t.Fatal(err)
		}
		gv, err := sps.Grant(ctx, maker, sp.ID, space.GrantInput{GroupID: g.ID, Access: space.Viewer})
		if err != nil {
			t.Fatal(err)
		}
		access(space.Viewer)
		if _, err := sps.Rename(ctx, me, sp.ID, "x"); !errs.Is(err, errs.Forbidden) {
			t.Errorf("viewer renames: %v", err)
		}
		if _, err := sps.Grant(ctx, me, sp.ID, space.GrantInput{UserID: mo.ID, Access: space.Viewer}); !errs.Is(err, errs.Forbidden) {
			t.Errorf("viewer grants: %v", err)
		}
		if _, err := sps.Grants(ctx, me, sp.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("viewer lists grants: %v", err)
		}

		own, err := sps.Grant(ctx, maker, sp.ID, space.GrantInput{UserID: mo.ID, Access: space.Editor})
		if err != nil {
			t.Fatal(err)
		}
		access(space.Editor) // max(viewer via group, editor own)
		name = "Client: J. Doe"
		if _, err := sps.Rename(ctx, me, sp.ID, name); err != nil {
			t.Errorf("editor renames: %v", err)
		}
		if err := sps.Revoke(ctx, maker, sp.ID, own.ID); err != nil {
			t.Fatal(err)
		}
		access(space.Viewer)
		if err := ids.RemoveMember(ctx, admin, g.ID, mo.ID); err != nil {
			t.Fatal(err)
		}
		access(space.None)

		// Deleting a group takes its grants along.
		if err := ids.SetMember(ctx, admin, g.ID, mo.ID, false); err != nil {
			t.Fatal(err)
		}
		access(space.Viewer)
		if err := ids.DeleteGroup(ctx, admin, g.ID, func(ctx context.Context, tx *sqldb.Tx) error {
			return space.DropGroupGrants(ctx, tx, env.Tenant.ID, g.ID)
		}); err != nil {
			t.Fatal(err)
		}
		access(space.None)
		if err := sps.Revoke(ctx, maker, sp.ID, gv.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("grant of a deleted group: %v", err)
		}
		// Admins administer every space.
		if a, _ := sps.AccessOf(ctx, admin, sp.ID); a != space.Editor {
			t.Errorf("tenant admin's access %q", a)
		}
	})
}

func TestGrantRefusals(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		sps := env.Core.Spaces
		maker := principal(t, env, env.AddUser(t, "mk@acme.example", "member", ""))
		sp, err := sps.Create(ctx, maker, "Board", "")
		if err != nil {
			t.Fatal(err)
		}
		other, _ := env.AddTenant(t, "globex", "owner@globex.example")
		stranger, err := env.Core.Identity.UserByEmail(ctx, other.ID, "owner@globex.example")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			in    space.GrantInput
			field string
		}{
			{space.GrantInput{UserID: maker.UserID, Access: "owner"}, "access"},
			{space.GrantInput{Access: space.Viewer}, "user_id"},
			{space.GrantInput{UserID: maker.UserID, GroupID: "g", Access: space.Viewer}, "group_id"},
			{space.GrantInput{UserID: stranger.ID, Access: space.Viewer}, "user_id"}, // another tenant's user
			{space.GrantInput{GroupID: "01a00000-0000-7000-8000-000000000000", Access: space.Viewer}, "group_id"},
		} {
			_, err := sps.Grant(ctx, maker, sp.ID, c.in)
			if e, ok := errs.As(err); !ok || e.Field != c.field {
				t.Errorf("grant %+v: %v; want an error about %s", c.in, err, c.field)
			}
		}
		for _, c := range []struct{ name, region, field string }{
			{"", "", "name"}, {"a/b", "", "name"}, {"ok", "mars", "region"},
		} {
			_, err := sps.Create(ctx, maker, c.name, c.region)
			if e, ok := errs.As(err); !ok || e.Field != c.field {
				t.Errorf("create %q in %q: %v; want an error about %s", c.name, c.region, err, c.field)
			}
		}
		// Another tenant's owner does not see the space at all.
		op := principal(t, env, stranger)
		op.TenantID = other.ID
		if _, err := sps.Get(ctx, op, sp.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("other tenant: %v", err)
		}
	})
}

// TestGroupAdmins: a group admin adds and removes ordinary members but
// appoints no admins; members see their own groups only.
func TestGroupAdmins(t *testing.T) {
	coretest.Run(t, func(t *testing.T, env *coretest.Env) {
		ctx := context.Background()
		ids := env.Core.Identity
		admin := principal(t, env, env.AddUser(t, "ad@acme.example", "admin", ""))
		lead := env.AddUser(t, "lead@acme.example", "member", "")
		a := env.AddUser(t, "a@acme.example", "member", "")
		b := env.AddUser(t, "b@acme.example", "member", "")
		lp := principal(t, env, lead)
		if _, err := ids.CreateGroup(ctx, lp, "Mine"); !errs.Is(err, errs.Forbidden) {
			t.Errorf("member creates a group: %v", err)
		}
		g, err := ids.CreateGroup(ctx, admin, "Field team")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ids.CreateGroup(ctx, admin, " field TEAM "); !errs.Is(err, errs.Invalid) {
			t.Errorf("duplicate name: %v", err)
		}
		other, err := ids.CreateGroup(ctx, admin, "Office")
		if err != nil {
			t.Fatal(err)
		}
		if err := ids.SetMember(ctx, lp, g.ID, a.ID, false); !errs.Is(err, errs.NotFound) {
			t.Errorf("outsider adds to a group: %v", err)
		}
		if err := ids.SetMember(ctx, admin, g.ID, lead.ID, true); err != nil {
			t.Fatal(err)
		}
		if err := ids.SetMember(ctx, lp, g.ID, a.ID, false); err != nil {
			t.Errorf("group admin adds a member: %v", err)
		}
		if err := ids.SetMember(ctx, lp, g.ID, b.ID, true); !errs.Is(err, errs.Forbidden) {
			t.Errorf("group admin appoints an admin: %v", err)
		}
		ap := principal(t, env, a)
		if err := ids.SetMember(ctx, ap, g.ID, b.ID, false); !errs.Is(err, errs.Forbidden) {
			t.Errorf("ordinary member adds someone: %v", err)
		}
		if err := ids.RemoveMember(ctx, ap, g.ID, lead.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("member removes the group admin: %v", err)
		}
		d, err := ids.GroupDetail(ctx, ap, g.ID)
		if err != nil || len(d.MemberList) != 2 || d.MemberList[0].Email != "lead@acme.example" || !d.MemberList[0].Admin || d.Admin {
			t.Fatalf("detail as member: %+v %v", d, err)
		}
		if _, err := ids.GroupDetail(ctx, ap, other.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("member reads a group they are not in: %v", err)
		}
		if gs, err := ids.Groups(ctx, ap); err != nil || len(gs) != 1 || gs[0].ID != g.ID || gs[0].Members != 2 {
			t.Errorf("member's groups: %+v %v", gs, err)
		}
		if gs, err := ids.Groups(ctx, admin); err != nil || len(gs) != 2 {
			t.Errorf("admin's groups: %+v %v", gs, err)
		}
		if err := ids.RemoveMember(ctx, lp, g.ID, a.ID); err != nil {
			t.Errorf("group admin removes a member: %v", err)
		}
		if err := ids.RemoveMember(ctx, lp, g.ID, lead.ID); err != nil {
			t.Errorf("group admin leaves: %v", err)
		}
		if _, err := ids.RenameGroup(ctx, lp, g.ID, "x"); !errs.Is(err, errs.Forbidden) {
			t.Errorf("member renames: %v", err)
		}
	})
}
