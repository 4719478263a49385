package csvfile_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/csvfile"
	"github.com/custodia/custodia/internal/errs"
)

func read(in string) (rows [][]string, problems []errs.RowProblem, err error) {
	problems, err = csvfile.Read(strings.NewReader(in), "email, name", 1000,
		func(names []string) ([]errs.RowProblem, error) { return nil, nil },
		func(line int, rec []string) { rows = append(rows, rec) })
	return rows, problems, err
}

func TestRead(t *testing.T) {
	cases := []struct {
		name, in string
		rows     int
		problem  string // "line:field" of the only problem, or of the refusal
	}{
		{"plain", "email,name\na@b.c,A\nd@e.f,D\n", 2, ""},
		{"blank lines", "email,name\n\na@b.c,A\n\n", 1, ""},
		{"unterminated quote on the first row", "email,name\n\"unterminated,x\n", 0, "2:file"},
		{"unterminated quote later", "email,name\na@b.c,A\n\"x,y\n", 1, "3:file"},
		{"bare quote", "email,name\na\"b,c\n", 0, "2:file"},
		{"wrong cell count", "email,name\na@b.c\n", 0, "2:file"},
		{"invalid UTF-8 in a cell", "email,name\na\xff\xfe@b.c,A\nok@b.c,B\n", 1, "2:email"},
		{"invalid UTF-8 in the header", "em\xffail,name\na@b.c,A\n", 0, "0:file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows, problems, err := read(c.in)
			if len(rows) != c.rows {
				t.Errorf("%d rows, want %d", len(rows), c.rows)
			}
			var got string
			switch {
			case err != nil && !errs.Is(err, errs.Invalid):
				t.Fatalf("not a client error: %v", err)
			case err != nil:
				if e, _ := errs.As(err); len(e.Rows) == 1 {
					got = fmt.Sprintf("%d:%s", e.Rows[0].Line, e.Rows[0].Field)
				} else {
					got = "0:" + e.Field
				}
			case len(problems) == 1:
				got = fmt.Sprintf("%d:%s", problems[0].Line, problems[0].Field)
			case len(problems) > 1:
				t.Fatalf("problems %+v", problems)
			}
			if got != c.problem {
				t.Errorf("problem %q, want %q (err %v)", got, c.problem, err)
			}
		})
	}
}

// FuzzRead: whatever the bytes, Read answers rows of the header's width
// and valid UTF-8, or problems, or a client error — never a panic.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"email,name\na@b.c,A\n", "email,name\n\"unterminated,x\n", "email,name\na\xff,b\n",
		"\ufeffemail,name\r\n\"a,b\",\"c\"\"d\"\r\n", "", "email\n\n\n", "a,b\n1,2,3\n\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		width := -1
		_, err := csvfile.Read(bytes.NewReader(in), "a, b", 100,
			func(names []string) ([]errs.RowProblem, error) { width = len(names); return nil, nil },
			func(line int, rec []string) {
				if len(rec) != width {
					t.Fatalf("row of %d cells under a header of %d", len(rec), width)
				}
				for _, c := range rec {
					if !utf8.ValidString(c) {
						t.Fatalf("invalid UTF-8 passed through: %q", c)
					}
				}
			})
		if err != nil && !errs.Is(err, errs.Invalid) {
			t.Fatalf("not a client error: %v", err)
		}
	})
}
