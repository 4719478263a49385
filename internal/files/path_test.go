package files_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/space"
)

func TestSplitPath(t *testing.T) {
	ok := map[string]string{
		"a/b/c.txt":                  "a|b|c.txt",
		"Reports/2026/":              "Reports|2026",
		"":                           "",
		"caf\u0065\u0301.txt":        "caf\u00e9.txt", // NFC
		"family 👨\u200d👩\u200d👧.jpg": "family 👨\u200d👩\u200d👧.jpg",
		"می\u200cخواهم.pdf":          "می\u200cخواهم.pdf", // the non-joiner Persian needs
	}
	for in, want := range ok {
		names, err := files.SplitPath("path", in)
		if err != nil || strings.Join(names, "|") != want {
			t.Errorf("%q: %q %v; want %q", in, names, err, want)
		}
	}
	for _, in := range []string{
		"/abs", "a/../b", "a/./b", "a//b", `a\b`, "a\x00b", "a\x1fb", "a\x7fb", "a\u0085b",
		"invoice\u202Efdp.exe", "a\u202Ab", "a\u2066b\u2069", "a\u200Fb", "zero\u200Bwidth", "\uFEFFbom",
		"soft\u00ADhyphen", "bad\xffutf8", strings.Repeat("x", files.MaxName+1), strings.Repeat("a/", files.MaxDepth+1) + "a",
	} {
		if _, err := files.SplitPath("path", in); !errs.Is(err, errs.Invalid) {
			t.Errorf("%q accepted (%v)", in, err)
		} else if e, _ := errs.As(err); e.Field != "path" {
			t.Errorf("%q: the error names %q", in, e.Field)
		}
	}
}

// FuzzSplitPath: every path is refused as the caller's mistake or split
// into names that are safe to show and store, and that split again the
// same way.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"a/b/c.txt", "../x", "a\u202Eb", "caf\u0065\u0301", "a//b/", "\x00", "x\u200dy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		names, err := files.SplitPath("path", in)
		if err != nil {
			if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != "path" {
				t.Fatalf("%q: %v", in, err)
			}
			return
		}
		for _, n := range names {
			switch {
			case n == "" || n == "." || n == "..", len(n) > files.MaxName, !utf8.ValidString(n), !norm.NFC.IsNormalString(n),
				strings.ContainsAny(n, `/\`), strings.ContainsFunc(n, space.Hidden):
				t.Fatalf("%q gave the unsafe name %q", in, n)
			}
		}
		again, err := files.SplitPath("path", strings.Join(names, "/"))
		if err != nil || strings.Join(again, "/") != strings.Join(names, "/") {
			t.Fatalf("%q: %q split again as %q, %v", in, names, again, err)
		}
	})
}
