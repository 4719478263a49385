package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
)

func TestBrowserName(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0":   "Edge on Windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15":      "Safari on macOS",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0":                                                  "Firefox on Linux",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/604": "Safari on iOS",
		"curl/8.5.0": "curl",
		"":           "Unknown browser",
	} {
		if got := browserName(ua); got != want {
			t.Errorf("%q: %q; want %q", ua, got, want)
		}
	}
}

// A service's refusal reads as a sentence by its field.
func TestMessage(t *testing.T) {
	for _, c := range []struct{ noun, detail, want string }{
		{"password", "required", "Enter the password."},
		{"password", "must be at least 15 characters long (has 5)", "The password must be at least 15 characters long (has 5)."},
		{"code", "Not correct!", "Not correct!"},
	} {
		if got := message(c.noun, c.detail); got != c.want {
			t.Errorf("message(%q, %q) = %q; want %q", c.noun, c.detail, got, c.want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{"/account?x=1": "/account?x=1", "//evil.example": "/", `/\evil`: "/",
		"https://evil.example/": "/", "javascript:alert(1)": "/", "": "/", "account": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q; want %q", in, got, want)
		}
	}
}

// Pages of a long list: the first, the last and two either side of the
// current one, gaps between; the filters kept in every link.
func TestPager(t *testing.T) {
	q := url.Values{"role": {"member"}}
	pg := newPager("/users", q, 7, 1240)
	if pg.From != 301 || pg.To != 350 || pg.Total != 1240 {
		t.Errorf("range %d–%d of %d", pg.From, pg.To, pg.Total)
	}
	var got []string
	for _, p := range pg.Pages {
		switch {
		case p.Gap:
			got = append(got, "…")
		case p.Current:
			got = append(got, fmt.Sprintf("[%d]", p.Number))
		default:
			got = append(got, fmt.Sprint(p.Number))
		}
	}
	if want := "1 … 5 6 [7] 8 9 … 25"; strings.Join(got, " ") != want {
		t.Errorf("pages %q; want %q", strings.Join(got, " "), want)
	}
	if pg.Prev != "/users?page=6&role=member" || pg.Next != "/users?page=8&role=member" || pg.Pages[0].Href != "/users?role=member" {
		t.Errorf("links %q %q %q", pg.Prev, pg.Next, pg.Pages[0].Href)
	}
	if one := newPager("/users", url.Values{}, 1, 3); one.Pages != nil || one.Next != "" || one.To != 3 {
		t.Errorf("one page: %+v", one)
	}
}

// Audit rows read as sentences: the action in words, the account it was
// about by name (or erased since), a refused route in full.
func TestAuditWords(t *testing.T) {
	people := map[string]string{"u1": "Kim Lee", "u2": "a person erased since"}
	for _, c := range []struct {
		e    audit.Entry
		want string
	}{
		{audit.Entry{Action: "user.update", Target: audit.EntryTarget{Type: "user", ID: "u1"}}, "changed a user: Kim Lee"},
		{audit.Entry{Action: "user.mfa.reset", Target: audit.EntryTarget{Type: "user", ID: "u2"}}, "reset someone's second factors: a person erased since"},
		{audit.Entry{Action: "access.denied", Target: audit.EntryTarget{Type: "route", ID: "POST /api/v1/invitations"}}, "was refused: POST /api/v1/invitations"},
		{audit.Entry{Action: "space.migrate", Target: audit.EntryTarget{Type: "space", ID: "0190aaaa-0000-7000-8000-0000000000ab"}}, "space.migrate (space …0000000000ab)"},
	} {
		if got := what(c.e, people); got != c.want {
			t.Errorf("what(%s) = %q; want %q", c.e.Action, got, c.want)
		}
	}
	for a, want := range map[audit.EntryActor]string{
		{Type: audit.ActorUser, Display: "kim@acme.example"}:  "kim@acme.example",
		{Type: audit.ActorToken, Display: "kim@acme.example"}: "kim@acme.example (API token)",
		{Type: audit.ActorUser, SubjectID: "s1"}:              "An erased person",
		{Type: audit.ActorSystem}:                             "Custodia (automatic)",
	} {
		if got := who(a); got != want {
			t.Errorf("who(%+v) = %q; want %q", a, got, want)
		}
	}
}
