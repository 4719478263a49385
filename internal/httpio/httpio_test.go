package httpio_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
)

type input struct {
	Email      string            `json:"email"`
	Count      int               `json:"count"`
	Attributes map[string]string `json:"attributes"`
	Recipients []string          `json:"recipients"`
	Nested     *struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	} `json:"nested"`
}

func decode(body string) (input, error) {
	var v input
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	err := httpio.Decode(httptest.NewRecorder(), r, &v)
	return v, err
}

func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	for body, field := range map[string]string{
		`{"email":"a` + "\xff\xfe" + `@b.c"}`:                                   "email",
		`{"count":1,"attributes":{"city":"Le` + "\xc3" + `ds"}}`:                "attributes.city",
		`{"recipients":["ok","b` + "\x80" + `"]}`:                               "recipients[1]",
		`{"nested":{"items":[{"name":"x"},{"name":"` + "\xed\xa0\x80" + `"}]}}`: "nested.items[1].name",
		`{"email":"ok"}` + "\xff":                                               "body",
	} {
		_, err := decode(body)
		e, ok := errs.As(err)
		if !ok || e.Kind != errs.Invalid || e.Field != field {
			t.Errorf("%q: %v (field %q); want a 400 naming %q", body, err, e.Field, field)
		}
	}
	if v, err := decode(`{"email":"zoë@example.org","attributes":{"city":"Zürich"}}`); err != nil || v.Email != "zoë@example.org" {
		t.Errorf("valid UTF-8 refused: %v", err)
	}
}

// FuzzDecode: any body is decoded into valid UTF-8 or refused as the
// client's mistake — never a panic, never an internal error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@b.c","count":3,"attributes":{"k":"v"},"recipients":["x"]}`,
		`{"email":"a` + "\xff" + `"}`, `{"nested":{"items":[{"name":"n"}]}}`, `{"unknown":1}`,
		`{"count":"x"}`, `[]`, `{} {}`, `{"email":`, "", `{"email":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decode(string(body))
		if err != nil {
			if k := errs.KindOf(err); k != errs.Invalid && k != errs.TooLarge {
				t.Fatalf("%q: %v is not the client's mistake", body, err)
			}
			return
		}
		for _, s := range append([]string{v.Email}, v.Recipients...) {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 decoded: %q", s)
			}
		}
	})
}
