package web

import (
	"fmt"
	"strings"
	"testing"
)

// show writes a diff as text: [-removed-] and {+added+} inside changed
// paragraphs, a prefix per paragraph.
func show(ls []diffLine) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteByte(l.Op)
		b.WriteByte(' ')
		for _, p := range l.Pieces {
			switch {
			case p.Changed && l.Op == '-':
				fmt.Fprintf(&b, "[-%s-]", p.Text)
			case p.Changed && l.Op == '+':
				fmt.Fprintf(&b, "{+%s+}", p.Text)
			default:
				b.WriteString(p.Text)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestDiffTexts(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		{"same\ntext", "same\ntext", "  same\n  text\n"},
		{"We send news monthly.\nUnsubscribe any time.", "We send news weekly.\nUnsubscribe any time.",
			"- We send news [-monthly.-]\n+ We send news {+weekly.+}\n  Unsubscribe any time.\n"},
		{"one\ntwo", "one\ntwo\nthree", "  one\n  two\n+ {+three+}\n"},
		{"one\ntwo\nthree", "one\nthree", "  one\n- [-two-]\n  three\n"},
		{"", "new text", "- \n+ {+new text+}\n"},
	} {
		if got := show(diffTexts(c.old, c.new)); got != c.want {
			t.Errorf("diff %q → %q:\n%s\nwant\n%s", c.old, c.new, got, c.want)
		}
	}
	// Put together again, each side is its text.
	old, new := "a b c\nd e f g\nh", "a b x c\nd f g h\nh\ni"
	var before, after []string
	for _, l := range diffTexts(old, new) {
		var s strings.Builder
		for _, p := range l.Pieces {
			s.WriteString(p.Text)
		}
		if l.Op != '+' {
			before = append(before, s.String())
		}
		if l.Op != '-' {
			after = append(after, s.String())
		}
	}
	if strings.Join(before, "\n") != old || strings.Join(after, "\n") != new {
		t.Errorf("sides %q / %q", before, after)
	}
}

func TestDiffTooLargeIsWhole(t *testing.T) {
	a := strings.Split(strings.Repeat("x\n", 3000), "\n")
	b := strings.Split(strings.Repeat("y\n", 3000), "\n")
	if ops := lcs(a, b); len(ops) != len(a)+len(b) {
		t.Errorf("%d edits; want every line removed and added", len(ops))
	}
}
