// Package httpio is the HTTP plumbing shared by the API and the console:
// strict JSON decoding with field-naming errors, JSON and problem+json
// (RFC 9457) responses, the one table from error kinds to status codes,
// and request ids.
package httpio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
)

// MaxBody is the default request body limit for JSON endpoints.
const MaxBody = 1 << 20

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Errors lists every bad row when the input was a file.
	Errors []errs.RowProblem `json:"errors,omitempty"`
}

// status is the one table from error kinds to HTTP statuses.
var status = map[errs.Kind]int{
	errs.Invalid:          http.StatusBadRequest,
	errs.Unauthenticated:  http.StatusUnauthorized,
	errs.Forbidden:        http.StatusForbidden,
	errs.NotFound:         http.StatusNotFound,
	errs.Gone:             http.StatusGone,
	errs.Conflict:         http.StatusConflict,
	errs.MethodNotAllowed: http.StatusMethodNotAllowed,
	errs.TooLarge:         http.StatusRequestEntityTooLarge,
	errs.NoSpace:          http.StatusInsufficientStorage,
	errs.TooManyRequests:  http.StatusTooManyRequests,
	errs.Unavailable:      http.StatusServiceUnavailable,
	errs.Internal:         http.StatusInternalServerError,
}

// StatusOf returns the HTTP status for err.
func StatusOf(err error) int { return status[errs.KindOf(err)] }

// Error answers with err as problem+json. Internal errors are logged with the
// request id and shown only as that id; classified errors show their detail.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	kind := errs.KindOf(err)
	p := Problem{
		Type:      "https://custodia.dev/problems/" + kind.String(),
		Title:     http.StatusText(status[kind]),
		Status:    status[kind],
		RequestID: RequestID(r.Context()),
	}
	if e, ok := errs.As(err); ok && kind != errs.Internal {
		p.Detail, p.Field, p.Errors = e.Detail, e.Field, e.Rows
		if p.Field != "" {
			p.Detail = p.Field + ": " + p.Detail
		}
	}
	if kind == errs.Internal {
		p.Detail = "an internal error occurred; quote the request id to the operator"
		log.ErrorContext(r.Context(), "internal error", "request_id", p.RequestID, "route", r.Pattern, "err", err.Error())
	}
	if kind == errs.NoSpace { // the operator's to fix: say where
		log.WarnContext(r.Context(), "storage full", "request_id", p.RequestID, "route", r.Pattern, "err", err.Error())
	}
	if kind == errs.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custodia"`)
	}
	writeJSON(w, p.Status, "application/problem+json", p)
}

// JSON answers with v as JSON.
func JSON(w http.ResponseWriter, code int, v any) {
	writeJSON(w, code, "application/json", v)
}

func writeJSON(w http.ResponseWriter, code int, ctype string, v any) {
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// Decode reads a JSON object body into v: at most MaxBody bytes, UTF-8, no
// unknown fields, exactly one value. Errors name the offending field.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errs.E(errs.Invalid, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return decodeError(err)
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD, even inside
	// an email address: refuse it instead, naming where it is.
	if !utf8.Valid(body) {
		return errs.Field(badUTF8Field(body), "not UTF-8 text")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errs.E(errs.Invalid, "body must hold a single JSON object")
	}
	return nil
}

// badUTF8Field names the member of a JSON body that holds its first byte
// that is not UTF-8 ("attributes.city", "recipients[2]"), or "body" when
// the byte is outside any member.
func badUTF8Field(body []byte) string {
	bad := 0
	for bad < len(body) {
		r, n := utf8.DecodeRune(body[bad:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		bad += n
	}
	type frame struct {
		object  bool
		name    string // the member's key, or its index in an array
		index   int
		wantKey bool
	}
	var stack []*frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			switch {
			case !f.object:
				fmt.Fprintf(&b, "[%d]", f.index)
			case f.name != "" && b.Len() > 0:
				b.WriteString("." + f.name)
			case f.name != "":
				b.WriteString(f.name)
			}
		}
		if b.Len() == 0 {
			return "body"
		}
		return b.String()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return path()
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		key, isKey := tok.(string)
		isKey = isKey && top != nil && top.object && top.wantKey
		if isKey {
			top.name, top.wantKey = key, false
		}
		if dec.InputOffset() > int64(bad) {
			return path()
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if isKey {
			continue
		}
		// A value ended (or a container opened, whose value ends later).
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
			continue
		}
		if len(stack) > 0 {
			if p := stack[len(stack)-1]; p.object {
				p.wantKey = true
			} else {
				p.index++
			}
		}
	}
}

var unknownField = regexp.MustCompile(`^json: unknown field "(.+)"$`)

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &errs.Error{Kind: errs.TooLarge, Detail: fmt.Sprintf("body larger than %d bytes", tooBig.Limit)}
	case errors.As(err, &syn):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return errs.E(errs.Invalid, "body must be a JSON object")
		}
		return errs.Field(field, "must be %s", jsonType(typ.Type.Kind().String()))
	case errors.Is(err, io.EOF):
		return errs.E(errs.Invalid, "empty body; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "malformed JSON: unexpected end of body")
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return errs.Field(m[1], "unknown field")
	}
	return errs.Wrap(errs.Invalid, err, "malformed JSON body")
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

type ctxKey int

const requestIDKey ctxKey = iota

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// WithRequestID stores id in ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID returns the request id in ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// NewRequestID returns the caller's X-Request-Id when it is well-formed, or a
// fresh random one.
func NewRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); requestIDRE.MatchString(id) {
		return id
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
