package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/app/apptest"
	"github.com/custodia/custodia/internal/rights"
)

func request(t *testing.T, env *apptest.Env, method, path string, body any, want int) rights.Request {
	t.Helper()
	var req rights.Request
	r := env.Do(t, env.Token, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: %d %s; want %d", method, path, r.Status, r.Body, want)
	}
	if want < 300 {
		r.JSON(t, &req)
	}
	return req
}

// TestRequestLifecycle: a request by email from someone unknown makes
// them a subject; its deadline is the same day next month, at midnight
// in the tenant's time zone; transitions follow the workflow (a rejection
// needs a reason), each in the history; an extension is possible once,
// before the deadline, and mailed to the requester; overdue requests are
// listed.
func TestRequestLifecycle(t *testing.T) {
	apptest.Run(t, func(t *testing.T, env *apptest.Env) {
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "Mars/Olympus"}); r.Status != 400 || r.Map(t)["field"] != "time_zone" {
			t.Errorf("bad time zone: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PUT", "/api/v1/settings/organisation", map[string]any{"time_zone": "Europe/Paris"}); r.Status != 200 {
			t.Fatalf("time zone: %d %s", r.Status, r.Body)
		}
		for _, bad := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"type": "gossip", "email": "x@example.org"}, "type"},
			{map[string]any{"type": "access"}, "subject_id"},
			{map[string]any{"type": "access", "email": "x@example.org", "phone": "+33123456789"}, "subject_id"},
			{map[string]any{"type": "access", "subject_id": "01a00000-0000-7000-8000-000000000000"}, "subject_id"},
			{map[string]any{"type": "access", "email": "x@example.org", "channel": "pigeon"}, "channel"},
		} {
			if r := env.Do(t, env.Token, "POST", "/api/v1/requests", bad.body); r.Status != 400 || r.Map(t)["field"] != bad.field {
				t.Errorf("%v: %d %s; want 400 naming %s", bad.body, r.Status, r.Body, bad.field)
			}
		}

		req := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "erasure", "email": "Ann@Example.org",
			"channel": "email", "note": "Asked by email on Monday"}, 201)
		paris, _ := time.LoadLocation("Europe/Paris")
		if want := rights.DueAt(req.ReceivedAt, paris); !req.DueAt.Equal(want) || req.Status != rights.Received || req.Overdue {
			t.Fatalf("new request: %+v (due %s)", req, want)
		}
		if local := req.DueAt.In(paris); local.Hour() != 23 || local.Minute() != 59 {
			t.Errorf("due_at %s is not the end of a day in Paris", local)
		}
		var ann map[string]any
		env.Do(t, env.Token, "GET", "/api/v1/subjects/"+req.SubjectID, nil).JSON(t, &ann)
		if ann["email"] != "ann@example.org" || ann["source"] != "request" {
			t.Fatalf("the requester as a subject: %v", ann)
		}
		again := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "access", "email": "ann@example.org"}, 201)
		if again.SubjectID != req.SubjectID {
			t.Errorf("a second request from the same address made another subject")
		}

		path := "/api/v1/requests/" + req.ID
		if r := env.Do(t, env.Token, "PATCH", path, map[string]any{"status": "completed"}); r.Status != 409 || r.Map(t)["field"] != "status" {
			t.Errorf("received → completed: %d %s", r.Status, r.Body)
		}
		if r := env.Do(t, env.Token, "PATCH", path, map[string]any{"status": "rejected"}); r.Status != 400 || r.Map(t)["field"] != "reason_code" {
			t.Errorf("rejection without a reason: %d %s", r.Status, r.Body)
		}
		request(t, env, "PATCH", path, map[string]any{"status": "verified", "note": "ID checked by phone"}, 200)
		owner := env.Do(t, env.Token, "GET", "/api/v1/users", nil)
		ownerID := strings.Split(strings.Split(string(owner.Body), `"id":"`)[1], `"`)[0]
		got := request(t, env, "PATCH", path, map[string]any{"status": "in_progress", "assignee_id": ownerID}, 200)
		if got.Status != rights.InProgress || got.AssigneeID != ownerID || len(got.History) != 3 ||
			got.History[0].Note != "Asked by email on Monday" || got.History[1].ToStatus != "verified" || got.History[1].Note != "ID checked by phone" {
			t.Fatalf("after two transitions: %+v", got)
		}

		// The extension: told to the requester, once, only before the deadline.
		if r := env.Do(t, env.Token, "POST", path+"/extend", map[string]any{"reason": ""}); r.Status != 400 {
			t.Errorf("extension without reason: %d", r.Status)
		}
		ext := request(t, env, "POST", path+"/extend", map[string]any{"reason": "Records are spread over three archives."}, 200)
		if want := rights.ExtendedDueAt(req.ReceivedAt, paris); ext.ExtendedDueAt == nil || !ext.ExtendedDueAt.Equal(want) ||
			ext.ExtensionReason != "Records are spread over three archives." {
			t.Fatalf("extended: %+v", ext)
		}
		m := env.Mail.Wait(t, "ann@example.org", "needs more time", 10*time.Second)
		if !strings.Contains(m.Text, "Records are spread over three archives.") {
			t.Errorf("extension mail: %s", m.Text)
		}
		if r := env.Do(t, env.Token, "POST", path+"/extend", map[string]any{"reason": "again"}); r.Status != 409 {
			t.Errorf("second extension: %d", r.Status)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/requests/"+again.ID+"/extend", map[string]any{"reason": "late"}); r.Status != 200 {
			t.Fatalf("extension in time: %d %s", r.Status, r.Body)
		}

		// A month and two days later: the unextended one is overdue, and can no longer be extended.
		late := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "restriction", "email": "bo@example.org"}, 201)
		env.Now.Advance(33 * 24 * time.Hour)
		var list struct{ Requests []rights.Request }
		env.Do(t, env.Token, "GET", "/api/v1/requests?due=overdue", nil).JSON(t, &list)
		if len(list.Requests) != 1 || list.Requests[0].ID != late.ID || !list.Requests[0].Overdue {
			t.Fatalf("overdue: %+v", list.Requests)
		}
		if r := env.Do(t, env.Token, "POST", "/api/v1/requests/"+late.ID+"/extend", map[string]any{"reason": "busy"}); r.Status != 409 {
			t.Errorf("extension after the deadline: %d %s", r.Status, r.Body)
		}
		env.Do(t, env.Token, "GET", "/api/v1/requests?status=open", nil).JSON(t, &list)
		if len(list.Requests) != 3 || list.Requests[0].ID != late.ID {
			t.Errorf("open requests, nearest deadline first: %+v", list.Requests)
		}
		request(t, env, "PATCH", path, map[string]any{"status": "completed"}, 200)
		if r := env.Do(t, env.Token, "PATCH", path, map[string]any{"status": "in_progress"}); r.Status != 409 {
			t.Errorf("reopening a completed request: %d", r.Status)
		}
		rej := request(t, env, "PATCH", "/api/v1/requests/"+late.ID, map[string]any{"status": "rejected", "reason_code": "identity_not_verified"}, 200)
		if rej.ReasonCode != "identity_not_verified" || rej.Overdue {
			t.Errorf("rejected: %+v", rej)
		}
	})
}

// TestOverdueDigest: once a day the admins get the requests overdue or
// due soon — by id and type, never by who asked.
func TestOverdueDigest(t *testing.T) {
	env := apptest.New(t, "")
	ctx := context.Background()
	env.AddUser(t, "admin@acme.example", "admin", apptest.Password)
	env.AddUser(t, "mia@acme.example", "member", apptest.Password)
	if n, err := env.App.Rights.Digest(ctx, env.Tenant.ID); err != nil || n != 0 {
		t.Fatalf("digest with nothing due: %d %v", n, err)
	}
	late := request(t, env, "POST", "/api/v1/requests", map[string]any{"type": "access", "email": "zed@example.org"}, 201)
	env.Now.Advance(33 * 24 * time.Hour)
	if n, err := env.App.Rights.Digest(ctx, env.Tenant.ID); err != nil || n != 2 {
		t.Fatalf("digest: %d %v", n, err)
	}
	for _, to := range []string{"owner@acme.example", "admin@acme.example"} {
		m := env.Mail.Wait(t, to, "overdue", 10*time.Second)
		if !strings.Contains(m.Text, late.ID) || strings.Contains(m.Text, "zed@example.org") {
			t.Errorf("digest to %s: %s", to, m.Text)
		}
	}
	if n, err := env.App.Rights.Digest(ctx, env.Tenant.ID); err != nil || n != 0 {
		t.Errorf("a second digest the same day: %d %v", n, err)
	}
	env.Now.Advance(24 * time.Hour)
	if n, err := env.App.Rights.Digest(ctx, env.Tenant.ID); err != nil || n != 2 {
		t.Errorf("the next day's digest: %d %v", n, err)
	}
	if got := len(env.Mail.To("mia@acme.example", "overdue")); got != 0 {
		t.Errorf("a member got %d digests", got)
	}
}
