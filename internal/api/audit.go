package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/httpio"
)

// AuditFilter reads the audit trail's filters from r's query: from, to
// (RFC 3339), actor, group (its members as actors), action, outcome,
// subject, cursor, limit; and format (json or csv).
func (a *API) AuditFilter(r *http.Request) (audit.Filter, string, error) {
	q, err := query(r, "from", "to", "actor", "group", "action", "outcome", "subject", "cursor", "limit", "format")
	if err != nil {
		return audit.Filter{}, "", err
	}
	f := audit.Filter{Actor: q.Get("actor"), Action: q.Get("action"), Outcome: q.Get("outcome"), SubjectID: q.Get("subject"), Cursor: q.Get("cursor")}
	if f.Outcome != "" && f.Outcome != audit.Success && f.Outcome != audit.Failure && f.Outcome != audit.Denied {
		return f, "", errs.Field("outcome", "success, failure or denied")
	}
	if g := q.Get("group"); g != "" {
		if f.ActorSubjects, err = a.identity.GroupSubjects(r.Context(), principal(r).TenantID, g); err != nil {
			return f, "", err
		}
	}
	if f.From, f.To, err = timeRange(q); err != nil {
		return f, "", err
	}
	if f.Limit, err = intParam(q, "limit"); err != nil {
		return f, "", err
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		return f, "", errs.Field("format", "json or csv")
	}
	return f, format, nil
}

// timeRange reads from and to (RFC 3339) from q; to must be after from.
func timeRange(q url.Values) (from, to time.Time, err error) {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return from, to, errs.Field(p.name, "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")
			}
			*p.dst = t
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, errs.Field("to", "must be after from")
	}
	return from, to, nil
}

// listAudit pages through the audit trail, or streams it all as CSV.
// Reading the trail reveals who did what, so it is itself audited.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	f, format, err := a.AuditFilter(r)
	if err != nil {
		return err
	}
	tid := principal(r).TenantID
	details := map[string]any{"format": format, "filtered": filtered(f)}
	if format == "csv" {
		if f.Cursor != "" || f.Limit != 0 {
			return errs.Field("format", "csv exports every matching event; drop cursor and limit")
		}
		if err := a.log.Record(r.Context(), tid, audit.Event{Action: "audit.export", TargetType: "audit", TargetID: tid, Details: details}); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="audit-`+a.now().UTC().Format("20060102T150405Z")+`.csv"`)
		if err := a.audit.WriteCSV(r.Context(), w, tid, f); err != nil {
			// Headers are gone; the truncated body is all the client sees. Log it.
			a.logger.ErrorContext(r.Context(), "audit csv export failed", "request_id", httpio.RequestID(r.Context()), "err", err.Error())
		}
		return nil
	}
	entries, next, err := a.ReadAudit(r, f)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, Page[audit.Entry]{Items: nonNil(entries), NextCursor: next})
	return nil
}

// filtered tells whether f selects less than the whole trail.
func filtered(f audit.Filter) bool {
	return f.Actor != "" || f.Action != "" || f.SubjectID != "" || f.Outcome != "" || f.ActorSubjects != nil || !f.From.IsZero() || !f.To.IsZero()
}

// ReadAudit answers a page of the trail for r's principal, and records
// that it was read (reading the trail reveals who did what).
func (a *API) ReadAudit(r *http.Request, f audit.Filter) ([]audit.Entry, string, error) {
	tid := principal(r).TenantID
	entries, next, err := a.audit.Query(r.Context(), tid, f)
	if err != nil {
		return nil, "", err
	}
	err = a.log.Record(r.Context(), tid, audit.Event{Action: "audit.read", TargetType: "audit", TargetID: tid,
		Details: map[string]any{"format": "", "filtered": filtered(f)}})
	return entries, next, err
}

// AuditState answers where r's tenant's chain ends, and its last
// verification (nil if never), without verifying it.
func (a *API) AuditState(r *http.Request) (audit.HeadState, *audit.Entry, error) {
	tid := principal(r).TenantID
	h, err := a.audit.Head(r.Context(), tid)
	if err != nil {
		return h, nil, err
	}
	last, _, err := a.audit.Query(r.Context(), tid, audit.Filter{Action: "audit.verify", Limit: 1})
	if err != nil || len(last) == 0 {
		return h, nil, err
	}
	return h, &last[0], nil
}

// VerifyAudit checks r's tenant's chain and records that it was checked.
func (a *API) VerifyAudit(r *http.Request) (audit.Verdict, error) {
	tid := principal(r).TenantID
	v, err := a.log.Verify(r.Context(), tid)
	if err != nil {
		return v, err
	}
	return v, a.log.Record(r.Context(), tid, audit.Event{Action: "audit.verify", TargetType: "audit", TargetID: tid,
		Outcome: map[bool]string{true: audit.Success, false: audit.Failure}[v.OK]})
}

func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	v, err := a.VerifyAudit(r)
	if err != nil {
		return err
	}
	httpio.JSON(w, http.StatusOK, v)
	return nil
}
