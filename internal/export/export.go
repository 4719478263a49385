// Package export answers the rights of access and portability (GDPR Art.
// 15 and 20): a zip of everything Custodia holds about one person, in
// JSON and CSV, with every version of the files linked to them, the
// supplementary information of Art. 15(1)(a)–(h) taken from the
// processing register, and a manifest with the SHA-256 of every file.
// The zip is streamed: files of any size pass through in constant memory.
package export

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/files"
	"github.com/custodia/custodia/internal/register"
	"github.com/custodia/custodia/internal/rights"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/subject"
	"github.com/custodia/custodia/internal/tenant"
)

// Format names the layout of the zip.
const Format = "custodia-access-export/1"

// Service builds exports.
type Service struct {
	db       *sqldb.DB
	log      *audit.Log
	audit    *audit.Reader
	subjects *subject.Service
	consent  *consent.Service
	register *register.Service
	rights   *rights.Service
	tenants  *tenant.Service
	files    *files.Service
	now      func() time.Time
}

// Deps are what a Service is built from.
type Deps struct {
	DB       *sqldb.DB
	Log      *audit.Log
	Audit    *audit.Reader
	Subjects *subject.Service
	Consent  *consent.Service
	Register *register.Service
	Rights   *rights.Service
	Tenants  *tenant.Service
	Files    *files.Service
	Now      func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	return &Service{db: d.DB, log: d.Log, audit: d.Audit, subjects: d.Subjects, consent: d.Consent, register: d.Register,
		rights: d.Rights, tenants: d.Tenants, files: d.Files, now: d.Now}
}

// Held is everything held about the person (subject.json).
type Held struct {
	Format      string              `json:"format"`
	GeneratedAt time.Time           `json:"generated_at"`
	Controller  string              `json:"controller"`
	Subject     subject.Subject     `json:"subject"`
	Account     *Account            `json:"account"`
	Consents    consent.Ledger      `json:"consents"`
	Requests    []rights.Request    `json:"requests"`
	Bounces     []Bounce            `json:"bounces"`
	AccessLog   []AccessLogEntry    `json:"access_log"`
	Files       []HeldFile          `json:"files"`    // every version of every file linked to the person
	Messages    []json.RawMessage   `json:"messages"` // issue 7 adds them
	Integration map[string][]string `json:"integrations"`
}

// HeldFile is a version of a file linked to the person, and where its
// content is in the zip.
type HeldFile struct {
	files.HeldFile
	ZipName string `json:"zip_name"`
}

// Account is the person's account, if they have one.
type Account struct {
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Bounce is a delivery failure of mail to the person.
type Bounce struct {
	Kind   string    `json:"kind"`
	Source string    `json:"source"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// AccessLogEntry is one use of the person's data, from the audit trail:
// what was done and when, by which kind of actor (staff are not named:
// they act for the controller).
type AccessLogEntry struct {
	seq    int64
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	By     string    `json:"by"` // user | token | operator | system | subject
}

// Supplementary is the information of Art. 15(1)(a)–(h) (supplementary.json).
type Supplementary struct {
	Controller string `json:"controller"`
	// ControllerContact is who the controller is and how to reach them and
	// their data protection officer (Art. 13(1)(a)(b), 15(1)); empty
	// fields were not given.
	ControllerContact tenant.Controller `json:"controller_contact"`
	Purposes          []PurposeInfo     `json:"purposes"`
	Source            string            `json:"source"` // where the data came from (Art. 15(1)(g))
	Rights            []string          `json:"rights"`
	Complaint         string            `json:"complaint"`
	Automated         string            `json:"automated_decisions"`
	Taxonomy          string            `json:"taxonomy"` // the version of the category keys used
}

// PurposeInfo is one processing activity: what for, on which basis, who
// receives the data, where it goes, how long it is kept.
type PurposeInfo struct {
	Key            string              `json:"key"`
	Name           string              `json:"name"`
	Description    string              `json:"description"`
	LegalBasis     string              `json:"legal_basis"`
	DataCategories []string            `json:"data_categories"`
	Recipients     []string            `json:"recipients"`
	Transfers      []register.Transfer `json:"transfers"`
	RetentionDays  int                 `json:"retention_days"`
}

// Manifest lists every file of the zip with its SHA-256.
type Manifest struct {
	Format      string    `json:"format"`
	SubjectID   string    `json:"subject_id"`
	GeneratedAt time.Time `json:"generated_at"`
	Files       []File    `json:"files"`
}

// File is one entry of the manifest.
type File struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Written is what an export wrote: its size and SHA-256.
type Written struct {
	Bytes  int64
	SHA256 string
}

// Export writes the zip of everything held about subjectID to w: the
// JSON and CSV files first, then every version of every file linked to
// the person (files/<file id>/v<n>/<name>), then the manifest.
//
// All but the content of files is gathered before the first byte, so
// that most failures come before anything is written; begin, when given,
// runs then (a single-use link is spent before it discloses anything).
// The export is audited before its first byte. Content is streamed from
// the store, checked as it is read: memory stays small whatever the
// files weigh, and an error after the first byte leaves w with a cut zip,
// which the caller must make visible (by aborting the response).
func (s *Service) Export(ctx context.Context, tenantID, subjectID string, w io.Writer, begin func(context.Context) error) (Written, error) {
	sub, err := s.subjects.ReadForExport(ctx, tenantID, subjectID)
	if err != nil {
		return Written{}, err
	}
	t, err := s.tenants.ByID(ctx, tenantID)
	if err != nil {
		return Written{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	held := Held{Format: Format, GeneratedAt: now, Controller: t.Name, Subject: sub, Integration: map[string][]string{},
		Messages: []json.RawMessage{}}
	if held.Consents, err = s.consent.Ledger(ctx, tenantID, subjectID); err != nil {
		return Written{}, err
	}
	reqs, err := s.rights.List(ctx, tenantID, rights.Filter{SubjectID: subjectID})
	if err != nil {
		return Written{}, err
	}
	held.Requests = []rights.Request{}
	for _, r := range reqs {
		full, err := s.rights.Get(ctx, tenantID, r.ID)
		if err != nil {
			return Written{}, err
		}
		held.Requests = append(held.Requests, full)
	}
	if held.Account, err = s.account(ctx, tenantID, subjectID); err != nil {
		return Written{}, err
	}
	if held.Bounces, err = s.bounces(ctx, tenantID, subjectID); err != nil {
		return Written{}, err
	}
	if held.AccessLog, err = s.accessLog(ctx, tenantID, subjectID); err != nil {
		return Written{}, err
	}
	hfs, err := s.files.HeldFiles(ctx, tenantID, subjectID)
	if err != nil {
		return Written{}, err
	}
	if err := s.files.CheckHeld(ctx, hfs); err != nil {
		return Written{}, err
	}
	held.Files = []HeldFile{}
	for _, f := range hfs {
		held.Files = append(held.Files, HeldFile{HeldFile: f, ZipName: fmt.Sprintf("files/%s/v%d/%s", f.FileID, f.Version, f.Name)})
	}
	var fileIDs []string
	var fileBytes int64
	for i := range held.Files {
		f := held.Files[i]
		if !slices.Contains(fileIDs, f.FileID) {
			fileIDs = append(fileIDs, f.FileID)
		}
		fileBytes += f.Size
	}
	sup, err := s.supplementary(ctx, tenantID, t.Name, sub)
	if err != nil {
		return Written{}, err
	}
	if sup.ControllerContact, err = s.tenants.Controller(ctx, tenantID); err != nil {
		return Written{}, err
	}
	if sup.ControllerContact.LegalName != "" {
		sup.Controller = sup.ControllerContact.LegalName
	}
	parts := []struct {
		name string
		body []byte
	}{
		{"subject.json", jsonBytes(held)},
		{"subject.csv", csvBytes(subjectTable(sub))},
		{"consents.csv", csvBytes(consentTable(held.Consents))},
		{"requests.csv", csvBytes(requestTable(held.Requests))},
		{"access_log.csv", csvBytes(accessTable(held.AccessLog))},
		{"files.csv", csvBytes(fileTable(held.Files))},
		{"supplementary.json", jsonBytes(sup)},
	}

	if begin != nil {
		if err := begin(ctx); err != nil {
			return Written{}, err
		}
	}
	details := map[string]any{"files": len(parts) + len(held.Files) + 1, "linked_files": len(fileIDs), "file_versions": len(held.Files),
		"file_bytes": fileBytes}
	if len(fileIDs) > 0 {
		details["file_ids"] = fileIDs
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: "subject.access_export", TargetType: "subject", TargetID: subjectID,
		SubjectID: subjectID, Details: details}); err != nil {
		return Written{}, err
	}

	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	zw := zip.NewWriter(cw)
	man := Manifest{Format: Format, SubjectID: subjectID, GeneratedAt: now}
	add := func(name string, method uint16, fill func(io.Writer) error) error {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: now})
		if err != nil {
			return err
		}
		h := sha256.New()
		n := &countWriter{w: io.MultiWriter(f, h)}
		if err := fill(n); err != nil {
			return err
		}
		man.Files = append(man.Files, File{Name: name, Bytes: n.n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	for _, p := range parts {
		if err := add(p.name, zip.Deflate, func(w io.Writer) error { _, err := w.Write(p.body); return err }); err != nil {
			return Written{}, err
		}
	}
	for _, f := range held.Files {
		// Stored as they are: files are often compressed already, and
		// deflating gigabytes would cost more than it saves.
		if err := add(f.ZipName, zip.Store, func(w io.Writer) error {
			c, err := s.files.OpenHeld(ctx, tenantID, f.HeldFile)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = io.Copy(w, c)
			return err
		}); err != nil {
			return Written{}, fmt.Errorf("export file %s version %d: %w", f.FileID, f.Version, err)
		}
	}
	if err := add("manifest.json", zip.Deflate, func(w io.Writer) error {
		_, err := w.Write(jsonBytes(man))
		return err
	}); err != nil {
		return Written{}, err
	}
	if err := zw.Close(); err != nil {
		return Written{}, err
	}
	return Written{Bytes: cw.n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// countWriter counts what goes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Service) account(ctx context.Context, tenantID, subjectID string) (*Account, error) {
	var a Account
	var created int64
	err := s.db.Read().QueryRow(ctx, "SELECT id, role, status, created_at FROM users WHERE tenant_id = ? AND subject_id = ?",
		tenantID, subjectID).Scan(&a.ID, &a.Role, &a.Status, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	a.CreatedAt = time.UnixMicro(created).UTC()
	return &a, err
}

func (s *Service) bounces(ctx context.Context, tenantID, subjectID string) ([]Bounce, error) {
	rows, err := s.db.Read().Query(ctx, "SELECT kind, source, reason, at FROM subject_bounces WHERE tenant_id = ? AND subject_id = ? ORDER BY at, id",
		tenantID, subjectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Bounce{}
	for rows.Next() {
		var b Bounce
		var at int64
		if err := rows.Scan(&b.Kind, &b.Source, &b.Reason, &at); err != nil {
			return nil, err
		}
		b.At = time.UnixMicro(at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// accessLog lists the audit events about the person, oldest first (at
// most the last 10 000).
func (s *Service) accessLog(ctx context.Context, tenantID, subjectID string) ([]AccessLogEntry, error) {
	out := []AccessLogEntry{}
	cursor := ""
	for len(out) < 10_000 {
		es, next, err := s.audit.Query(ctx, tenantID, audit.Filter{SubjectID: subjectID, Cursor: cursor, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			out = append(out, AccessLogEntry{seq: e.Seq, At: e.At, Action: e.Action, By: e.Actor.Type})
		}
		if next == "" {
			break
		}
		cursor = next
	}
	slices.SortFunc(out, func(a, b AccessLogEntry) int { return int(a.seq - b.seq) }) // the trail's order
	return out, nil
}

func (s *Service) supplementary(ctx context.Context, tenantID, controller string, sub subject.Subject) (Supplementary, error) {
	ps, err := s.register.List(ctx, tenantID)
	if err != nil {
		return Supplementary{}, err
	}
	sup := Supplementary{Controller: controller, Source: sub.Source, Purposes: []PurposeInfo{}, Taxonomy: register.Shipped().Version,
		Rights: []string{"access (Art. 15)", "rectification (Art. 16)", "erasure (Art. 17)", "restriction (Art. 18)",
			"portability (Art. 20)", "objection (Art. 21)", "withdrawal of consent at any time (Art. 7(3))"},
		Complaint: "You may lodge a complaint with a supervisory authority, in particular in the Member State of your habitual residence, place of work or of the alleged infringement (Art. 77).",
		Automated: "No decision based solely on automated processing, including profiling, is made by Custodia (Art. 22)."}
	for _, p := range ps {
		sup.Purposes = append(sup.Purposes, PurposeInfo{Key: p.Key, Name: p.Name, Description: p.Description, LegalBasis: p.LegalBasis,
			DataCategories: p.DataCategories, Recipients: p.Recipients, Transfers: p.Transfers, RetentionDays: p.RetentionDays})
	}
	return sup, nil
}

func jsonBytes(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("access: encode %T: %v", v, err)) // only our own types: cannot fail
	}
	return append(b, '\n')
}

func csvBytes(rows [][]string) []byte {
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	for _, r := range rows {
		for i := range r {
			r[i] = audit.SafeCell(r[i])
		}
		_ = cw.Write(r) // a bytes.Buffer does not fail
	}
	cw.Flush()
	return b.Bytes()
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func subjectTable(s subject.Subject) [][]string {
	keys := slices.Sorted(maps.Keys(s.Attributes))
	head := []string{"id", "email", "phone", "external_id", "source", "status", "created_at", "updated_at", "last_activity_at"}
	row := []string{s.ID, s.Email, s.Phone, s.ExternalID, s.Source, s.Status, stamp(&s.CreatedAt), stamp(&s.UpdatedAt), stamp(&s.LastActivityAt)}
	for _, k := range keys {
		head = append(head, "attributes."+k)
		v := s.Attributes[k]
		if str, ok := v.(string); ok {
			row = append(row, str)
		} else {
			b, _ := json.Marshal(v)
			row = append(row, string(b))
		}
	}
	return [][]string{head, row}
}

func consentTable(l consent.Ledger) [][]string {
	out := [][]string{{"seq", "purpose", "action", "method", "notice_version", "notice_hash", "source", "ip", "created_at", "valid_until", "hash"}}
	for _, e := range l.History {
		out = append(out, []string{fmt.Sprint(e.Seq), e.Purpose, e.Action, e.Method, fmt.Sprint(e.NoticeVersion), e.NoticeHash,
			e.Source, e.IP, stamp(&e.CreatedAt), stamp(e.ValidUntil), e.Hash})
	}
	return out
}

func requestTable(rs []rights.Request) [][]string {
	out := [][]string{{"id", "type", "channel", "status", "reason_code", "received_at", "due_at", "extended_due_at"}}
	for _, r := range rs {
		out = append(out, []string{r.ID, r.Type, r.Channel, r.Status, r.ReasonCode, stamp(&r.ReceivedAt), stamp(&r.DueAt), stamp(r.ExtendedDueAt)})
	}
	return out
}

func fileTable(fs []HeldFile) [][]string {
	out := [][]string{{"file_id", "space_id", "path", "version", "current", "in_trash", "size", "content_type", "sha256", "created_at",
		"linked_at", "zip_name"}}
	for _, f := range fs {
		out = append(out, []string{f.FileID, f.SpaceID, f.Path, fmt.Sprint(f.Version), fmt.Sprint(f.Current), fmt.Sprint(f.InTrash),
			fmt.Sprint(f.Size), f.ContentType, f.SHA256, stamp(&f.CreatedAt), stamp(&f.LinkedAt), f.ZipName})
	}
	return out
}

func accessTable(es []AccessLogEntry) [][]string {
	out := [][]string{{"at", "action", "by"}}
	for _, e := range es {
		out = append(out, []string{stamp(&e.At), e.Action, strings.ToLower(e.By)})
	}
	return out
}
