package subject

import (
	"encoding/json"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/errs"
)

// Limits on input sizes.
const (
	maxEmail      = 254
	maxExternalID = 200
	maxSource     = 200
	maxAttributes = 64 << 10
	maxAttrKey    = 100
)

// NormalizeEmail validates an email address and returns its canonical form
// (NFKC, trimmed, lower-cased), which is what the blind index is taken of.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(norm.NFKC.String(s)))
	if s == "" {
		return "", errs.Field("email", "must not be empty")
	}
	if len(s) > maxEmail {
		return "", errs.Field("email", "at most %d characters", maxEmail)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", errs.Field("email", "not a valid email address")
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", errs.Field("email", "not a valid email address")
	}
	return s, nil
}

// Mailbox is a normalised address without its sub-address ("+tag" in the
// local part), which most providers deliver to the same inbox: for limits
// on what is mailed to one person. Stored addresses keep the tag.
func Mailbox(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if i := strings.IndexByte(local, '+'); ok && i > 0 {
		return local[:i] + "@" + domain
	}
	return email
}

// NormalizePhone validates a phone number and returns it in E.164 form:
// a leading + and 8 to 15 digits; spaces, dots, dashes and brackets are dropped.
func NormalizePhone(s string) (string, error) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(norm.NFKC.String(s)) {
		switch {
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", errs.Field("phone", "use international format, e.g. +44 20 7946 0958")
		}
	}
	p := b.String()
	if !strings.HasPrefix(p, "+") || len(p) < 9 || len(p) > 16 || p[1] == '0' {
		return "", errs.Field("phone", "use international format with country code, e.g. +44 20 7946 0958")
	}
	return p, nil
}

// NormalizeExternalID validates an external id (the integrating app's own
// identifier); it is compared exactly, after NFC and trimming.
func NormalizeExternalID(s string) (string, error) {
	s = strings.TrimSpace(norm.NFC.String(s))
	if s == "" {
		return "", errs.Field("external_id", "must not be empty")
	}
	if len(s) > maxExternalID {
		return "", errs.Field("external_id", "at most %d characters", maxExternalID)
	}
	if hasControl(s) {
		return "", errs.Field("external_id", "must not contain control characters")
	}
	return s, nil
}

func normalizeSource(s string) (string, error) {
	s = strings.TrimSpace(norm.NFC.String(s))
	if len(s) > maxSource {
		return "", errs.Field("source", "at most %d characters", maxSource)
	}
	if hasControl(s) {
		return "", errs.Field("source", "must not contain control characters")
	}
	return s, nil
}

func validateAttributes(a map[string]any) error {
	for k := range a {
		if k == "" || utf8.RuneCountInString(k) > maxAttrKey || hasControl(k) {
			return errs.Field("attributes", "keys must be 1–%d printable characters", maxAttrKey)
		}
	}
	b, err := json.Marshal(a)
	if err != nil {
		return errs.Field("attributes", "must be a JSON object")
	}
	if len(b) > maxAttributes {
		return errs.Field("attributes", "at most %d bytes as JSON", maxAttributes)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
