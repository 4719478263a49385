// Package errs defines the small closed set of error kinds that every
// Custodia package returns and that the HTTP layer maps to status codes:
// Invalid 400, Unauthenticated 401, Forbidden 403, NotFound 404, Gone 410,
// Conflict 409, MethodNotAllowed 405, TooLarge 413, TooManyRequests 429,
// NoSpace 507 (a full disk: the operator's to fix, nothing written),
// Unavailable 503 and Internal 500. A new kind is added here, in httpio's
// table and in the OpenAPI document's description, in one change.
//
// A domain error carries a Kind, an optional Field naming the offending
// input, and a Detail safe to show to the caller. The wrapped cause is for
// logs only and never reaches a client.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error for callers; the set is closed.
type Kind int

// The kinds. Internal is the zero value so that an unclassified error is
// never mistaken for a client mistake.
const (
	Internal Kind = iota
	Invalid
	Unauthenticated
	Forbidden
	NotFound
	Gone
	Conflict
	MethodNotAllowed
	TooLarge
	TooManyRequests
	Unavailable
	// NoSpace: a disk (the database's or a region's) is full; nothing was
	// written, and the same request succeeds once space is freed.
	NoSpace
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case NotFound:
		return "not-found"
	case Gone:
		return "gone"
	case Conflict:
		return "conflict"
	case MethodNotAllowed:
		return "method-not-allowed"
	case TooLarge:
		return "too-large"
	case TooManyRequests:
		return "too-many-requests"
	case Unavailable:
		return "unavailable"
	case NoSpace:
		return "insufficient-storage"
	default:
		return "internal"
	}
}

// Error is a classified error.
type Error struct {
	Kind   Kind
	Field  string       // JSON name of the offending input, if any
	Detail string       // safe to show to the caller; never contains personal data
	Rows   []RowProblem // for a file: every bad row
	Err    error        // cause, for logs only
}

// RowProblem is what is wrong with one row of an imported file. It names
// the line and the column, never the value (which may be personal data).
type RowProblem struct {
	Line   int    `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Rows builds an Invalid error listing every bad row of a file.
func Rows(detail string, rows []RowProblem) error {
	return &Error{Kind: Invalid, Detail: detail, Rows: rows}
}

func (e *Error) Error() string {
	msg := e.Kind.String()
	if e.Field != "" {
		msg += " " + e.Field
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// E builds a classified error with a formatted detail.
func E(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Field reports invalid input in the named field.
func Field(field, format string, args ...any) error {
	return &Error{Kind: Invalid, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Wrap classifies cause under kind with a safe detail.
func Wrap(kind Kind, cause error, detail string) error {
	return &Error{Kind: kind, Detail: detail, Err: cause}
}

// KindOf returns the kind of err, Internal when it is not classified.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err is classified as kind.
func Is(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }

// As returns the classified error inside err, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
