package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
	"github.com/custodia/custodia/internal/subject"
)

// Page is a list response.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (a *API) createSubject(w http.ResponseWriter, r *http.Request) error {
	var in subject.New
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	s, err := a.subjects.Create(r.Context(), principal(r).TenantID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/subjects/"+s.ID)
	httpio.JSON(w, http.StatusCreated, s)
	return nil
}

func (a *API) getSubject(w http.ResponseWriter, r *http.Request) error {
	s, err := a.subjects.Get(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

func (a *API) rectifySubject(w http.ResponseWriter, r *http.Request) error {
	var p subject.Patch
	if err := httpio.Decode(w, r, &p); err != nil {
		return err
	}
	s, err := a.subjects.Rectify(r.Context(), principal(r).TenantID, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

// listSubjects looks subjects up by one identifier, or pages through all.
func (a *API) listSubjects(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "email", "phone", "external_id", "cursor", "limit", "consent", "purpose", "status", "restricted", "legal_hold", "sort")
	if err != nil {
		return err
	}
	tid := principal(r).TenantID
	if q.Has("email") || q.Has("phone") || q.Has("external_id") {
		subs, err := a.subjects.Find(r.Context(), tid, subject.Lookup{
			Email: q.Get("email"), Phone: q.Get("phone"), ExternalID: q.Get("external_id"),
		})
		if err != nil {
			return err
		}
		httpio.JSON(w, http.StatusOK, Page[subject.Subject]{Items: nonNil(subs)})
		return nil
	}
	limit, err := intParam(q, "limit")
	if err != nil {
		return err
	}
	o := subject.ListOptions{After: q.Get("cursor"), Limit: limit, Status: q.Get("status")}
	for _, b := range []struct {
		name string
		dst  **bool
	}{{"restricted", &o.Restricted}, {"legal_hold", &o.Held}} {
		switch q.Get(b.name) {
		case "":
		case "true", "false":
			v := q.Get(b.name) == "true"
			*b.dst = &v
		default:
			return errs.Field(b.name, "true or false")
		}
	}
	switch q.Get("sort") {
	case "", "added":
	case "-added":
		o.Newest = true
	default:
		return errs.Field("sort", "added (oldest first) or -added (newest first)")
	}
	switch c := q.Get("consent"); {
	case c == "missing":
		if o.Where, err = a.consent.MissingFilter(r.Context(), tid, q.Get("purpose")); err != nil {
			return err
		}
	case c != "":
		return errs.Field("consent", "missing is the only filter")
	case q.Has("purpose"):
		return errs.Field("purpose", "only with consent=missing")
	}
	subs, next, err := a.subjects.List(r.Context(), tid, o)
	if err != nil {
		return err
	}
	total, more, err := a.subjects.ListCount(r.Context(), tid, o)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, struct {
		Page[subject.Subject]
		Total     int  `json:"total"`      // exact up to 10 000
		TotalMore bool `json:"total_more"` // more than total match
	}{Page[subject.Subject]{Items: nonNil(subs), NextCursor: next}, total, more})
	return nil
}

// query returns the query parameters, refusing unknown or repeated ones.
func query(r *http.Request, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errs.E(errs.Invalid, "malformed query string")
	}
	allowed := map[string]bool{}
	for _, k := range known {
		allowed[k] = true
	}
	for k, v := range q {
		if !allowed[k] {
			return nil, errs.Field(k, "unknown query parameter")
		}
		if len(v) > 1 {
			return nil, errs.Field(k, "given more than once")
		}
	}
	return q, nil
}

func intParam(q url.Values, name string) (int, error) {
	if !q.Has(name) {
		return 0, nil
	}
	n, err := strconv.Atoi(q.Get(name))
	if err != nil || n < 1 {
		return 0, errs.Field(name, "must be a positive integer")
	}
	return n, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// maxContactsFile bounds an uploaded contacts file.
const maxContactsFile = 256 << 20

// importSubjects imports contacts from CSV or JSON. With Accept:
// application/x-ndjson it streams progress — {"done":n,"total":t} after
// each chunk written — and ends with {"result":…} or {"error":…}; a file
// with bad rows is refused before anything streams.
func (a *API) importSubjects(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	parse := map[string]func(io.Reader) ([]subject.ImportRow, []errs.RowProblem, error){
		"text/csv": subject.ParseCSV, "application/json": subject.ParseJSON}[mt]
	if parse == nil {
		return errs.Field("Content-Type", "send the file as text/csv or application/json")
	}
	q := r.URL.Query()
	dryRun := false
	switch v := q.Get("dry_run"); v {
	case "", "false":
	case "true":
		dryRun = true
	default:
		return errs.Field("dry_run", "true or false")
	}
	existing := q.Get("existing")
	if existing == "" {
		existing = subject.ExistingFail
	}
	rows, problems, err := parse(http.MaxBytesReader(w, r.Body, maxContactsFile))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return errs.E(errs.TooLarge, "the file is larger than %d MiB", maxContactsFile>>20)
	}
	if err != nil {
		return err
	}
	stream := strings.Contains(r.Header.Get("Accept"), "application/x-ndjson")
	lines := newLines(w)
	var progress func(done, total int)
	if stream {
		progress = func(done, total int) { lines.write(map[string]int{"done": done, "total": total}) }
	}
	res, err := a.subjects.Import(r.Context(), principal(r).TenantID, rows, problems, existing, dryRun, progress)
	switch {
	case err != nil && lines.started:
		a.logger.ErrorContext(r.Context(), "import stopped", "request_id", httpio.RequestID(r.Context()), "error", loggable(err))
		lines.write(map[string]any{"error": map[string]any{"detail": "the import stopped; the contacts counted as created were kept",
			"created": res.Created, "request_id": httpio.RequestID(r.Context())}})
		return nil
	case err != nil:
		return err
	case stream:
		lines.write(map[string]any{"result": res})
		return nil
	case dryRun:
		httpio.JSON(w, http.StatusOK, res)
	default:
		httpio.JSON(w, http.StatusCreated, res)
	}
	return nil
}

// exportSubjects answers every subject of the tenant as CSV or JSON.
func (a *API) exportSubjects(w http.ResponseWriter, r *http.Request) error {
	return a.SendContacts(w, r, formatParam(r))
}

// exportSubject answers the access/portability zip of one subject.
func (a *API) exportSubject(w http.ResponseWriter, r *http.Request) error {
	return a.accessZip(w, r, r.PathValue("id"))
}

// eraseSubject erases a subject who has no account, optionally answering
// a verified erasure request, which is then completed. A person with an
// account is erased through eraseUser, with the account's rules.
func (a *API) eraseSubject(w http.ResponseWriter, r *http.Request) error {
	tid, id := principal(r).TenantID, r.PathValue("id")
	if _, err := a.subjects.Key(r.Context(), tid, id); err != nil {
		return err // unknown: 404; erased already: 410
	}
	c, err := a.erase(w, r, id, func(in subject.EraseInput) (subject.Certificate, error) {
		return a.subjects.Erase(r.Context(), tid, id, in)
	})
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}

func (a *API) erasureCertificate(w http.ResponseWriter, r *http.Request) error {
	c, err := a.subjects.ErasureCertificate(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, c)
	return nil
}

func (a *API) restrictSubject(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	s, err := a.subjects.Restrict(r.Context(), principal(r).TenantID, r.PathValue("id"), in.Reason)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

func (a *API) unrestrictSubject(w http.ResponseWriter, r *http.Request) error {
	s, err := a.rights.LiftRestriction(r.Context(), principal(r).TenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, s)
	return nil
}

func (a *API) decideObjection(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Decision string `json:"decision"`
	}
	if err := httpio.Decode(w, r, &in); err != nil {
		return err
	}
	o, err := a.rights.Decide(r.Context(), principal(r).TenantID, r.PathValue("id"), r.PathValue("purpose"), in.Decision)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, o)
	return nil
}

func (a *API) processing(w http.ResponseWriter, r *http.Request) error {
	p, err := a.rights.Processing(r.Context(), principal(r).TenantID, r.PathValue("id"), r.URL.Query().Get("purpose"))
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, p)
	return nil
}
