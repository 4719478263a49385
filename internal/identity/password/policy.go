package password

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn/frequency"
	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/errs"
)

// Presets of the tenant password policy.
const (
	Standard = "standard" // length over composition (NIST SP 800-63B): 12 with 2FA enforced, 15 without
	Complex  = "complex"  // 10, and letters, digits and special characters mixed
)

// Hard limits whatever the preset.
const (
	Floor = 8
	Max   = 128
)

// Policy is a tenant's password policy.
type Policy struct {
	Preset            string
	TwoFactorEnforced bool
}

// MinLength is the shortest password the policy accepts, in characters.
func (p Policy) MinLength() int {
	switch {
	case p.Preset == Complex:
		return 10
	case p.TwoFactorEnforced:
		return 12
	default:
		return 15
	}
}

// Blocklist is a set of passwords refused everywhere.
type Blocklist map[string]struct{}

// CommonPasswords returns the 30 000 most common passwords of the zxcvbn
// frequency list, lower-cased.
func CommonPasswords() Blocklist {
	list := frequency.FrequencyLists["passwords"]
	b := make(Blocklist, len(list))
	for _, pw := range list {
		b[strings.ToLower(pw)] = struct{}{}
	}
	return b
}

// Check says why password is refused under p, or nil. The refusal names
// the rule, never echoes the password. context holds words the password
// must not contain: the tenant's name, the user's email and its parts.
func (p Policy) Check(password string, blocked Blocklist, context ...string) error {
	pw := norm.NFKC.String(password)
	n := utf8.RuneCountInString(pw)
	if min := max(Floor, p.MinLength()); n < min {
		return errs.Field("password", "must be at least %d characters long (has %d)", min, n)
	}
	if n > Max {
		return errs.Field("password", "must be at most %d characters long", Max)
	}
	if strings.IndexFunc(pw, unicode.IsControl) >= 0 {
		return errs.Field("password", "must not contain control characters")
	}
	lower := strings.ToLower(pw)
	if _, ok := blocked[lower]; ok {
		return errs.Field("password", "is one of the most common passwords; choose another")
	}
	if trimmed := strings.TrimRightFunc(lower, func(r rune) bool { return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) }); trimmed != lower {
		if _, ok := blocked[trimmed]; ok {
			return errs.Field("password", "is a common password with digits or symbols added; choose another")
		}
	}
	if allSame(lower) {
		return errs.Field("password", "must not repeat a single character")
	}
	if unit := repeatedUnit(lower); unit > 0 {
		return errs.Field("password", "must not be one short sequence repeated (%d characters, repeated)", unit)
	}
	for _, w := range contextWords(context) {
		if strings.Contains(lower, w) {
			return errs.Field("password", "must not contain your email address, your name or your organisation's name")
		}
	}
	if p.Preset == Complex {
		var letter, digit, special bool
		for _, r := range pw {
			switch {
			case unicode.IsLetter(r):
				letter = true
			case unicode.IsDigit(r):
				digit = true
			default:
				special = true
			}
		}
		if !letter || !digit || !special {
			return errs.Field("password", "must mix letters, digits and special characters")
		}
	}
	return nil
}

// contextWords splits context into lower-case words of 4 or more letters
// (emails into local part and domain labels).
func contextWords(context []string) []string {
	var words []string
	for _, c := range context {
		c = strings.ToLower(norm.NFKC.String(c))
		for _, w := range strings.FieldsFunc(c, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			if _, common := webmail[w]; utf8.RuneCountInString(w) >= 4 && !common {
				words = append(words, w)
			}
		}
	}
	return words
}

// webmail are email domain labels too common to say anything about a person.
var webmail = map[string]struct{}{"gmail": {}, "googlemail": {}, "yahoo": {}, "hotmail": {}, "outlook": {},
	"live": {}, "icloud": {}, "proton": {}, "protonmail": {}, "mail": {}, "email": {}}

// repeatedUnit returns the length of the unit s repeats ("abcabc" → 3),
// for units up to 8 characters, or 0.
func repeatedUnit(s string) int {
	r := []rune(s)
	for n := 2; n <= 8 && n <= len(r)/2; n++ {
		if len(r)%n == 0 && strings.Repeat(string(r[:n]), len(r)/n) == s {
			return n
		}
	}
	return 0
}

func allSame(s string) bool {
	first, _ := utf8.DecodeRuneInString(s)
	return strings.Trim(s, string(first)) == ""
}
