package web

import (
	"strings"
	"unicode"
)

// A diff of two notice texts, as a reader compares versions: paragraph by
// paragraph (lines), and within a changed paragraph word by word.

// diffLine is one paragraph of a diff: kept, removed or added, in pieces
// of which the changed words are marked.
type diffLine struct {
	Op     byte // ' ' kept, '-' removed, '+' added
	Pieces []diffPiece
}

// diffPiece is a run of text, changed or not.
type diffPiece struct {
	Text    string
	Changed bool
}

// maxDiffCells bounds the work of one comparison (its table of common
// subsequences); beyond it, paragraphs are compared whole.
const maxDiffCells = 4_000_000

// diffTexts compares old and new paragraph by paragraph; a removed
// paragraph followed by an added one is compared word by word.
func diffTexts(old, new string) []diffLine {
	a, b := strings.Split(old, "\n"), strings.Split(new, "\n")
	var out []diffLine
	ops := lcs(a, b)
	for i := 0; i < len(ops); i++ {
		op := ops[i]
		if op.op == '-' && i+1 < len(ops) && ops[i+1].op == '+' { // a changed paragraph: which words
			before, after := words(op.text), words(ops[i+1].text)
			var rm, add []diffPiece
			for _, w := range lcs(before, after) {
				switch w.op {
				case ' ':
					rm, add = append(rm, diffPiece{w.text, false}), append(add, diffPiece{w.text, false})
				case '-':
					rm = append(rm, diffPiece{w.text, true})
				case '+':
					add = append(add, diffPiece{w.text, true})
				}
			}
			out = append(out, diffLine{'-', merge(rm)}, diffLine{'+', merge(add)})
			i++
			continue
		}
		out = append(out, diffLine{op.op, []diffPiece{{op.text, op.op != ' '}}})
	}
	return out
}

// edit is one step of turning one sequence into another.
type edit struct {
	op   byte
	text string
}

// lcs answers the edits from a to b along a longest common subsequence;
// past maxDiffCells, all of a removed and all of b added.
func lcs(a, b []string) []edit {
	if len(a)*len(b) > maxDiffCells {
		var out []edit
		for _, s := range a {
			out = append(out, edit{'-', s})
		}
		for _, s := range b {
			out = append(out, edit{'+', s})
		}
		return out
	}
	// n[i][j]: the length of the longest common subsequence of a[i:] and b[j:].
	n := make([][]int32, len(a)+1)
	for i := range n {
		n[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				n[i][j] = n[i+1][j+1] + 1
			} else {
				n[i][j] = max(n[i+1][j], n[i][j+1])
			}
		}
	}
	var out []edit
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, edit{' ', a[i]})
			i, j = i+1, j+1
		case n[i+1][j] >= n[i][j+1]:
			out = append(out, edit{'-', a[i]})
			i++
		default:
			out = append(out, edit{'+', b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		out = append(out, edit{'-', a[i]})
	}
	for ; j < len(b); j++ {
		out = append(out, edit{'+', b[j]})
	}
	return out
}

// words splits s into words, each with the spaces after it, so that the
// pieces put together are s again.
func words(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if unicode.IsSpace(r) && i+1 < len(s) && !unicode.IsSpace(rune(s[i+1])) {
			out = append(out, s[start:i+1])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// merge joins neighbouring pieces that are both changed or both kept.
func merge(ps []diffPiece) []diffPiece {
	var out []diffPiece
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Changed == p.Changed {
			out[n-1].Text += p.Text
			continue
		}
		out = append(out, p)
	}
	return out
}
