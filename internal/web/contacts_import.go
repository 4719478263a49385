package web

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/subject"
)

// Importing contacts from a CSV or JSON file: checked in full first,
// every bad row shown by line and field; then written, with a progress
// bar fed by the API's NDJSON stream when the script runs, by a plain
// form post when it does not.

// maxContactsFile bounds a contacts file sent through the console: the
// check page sends it back with the confirmation.
const maxContactsFile = 32 << 20

// contactsImportData is what the import pages show.
type contactsImportData struct {
	Rows     []errs.RowProblem // what is wrong, by line
	Result   subject.ImportResult
	Checked  bool
	Data     string // the good file, sent back with the import
	Format   string // csv or json
	Existing string // fail or skip
}

func (c *Console) importContactsPage(w http.ResponseWriter, r *http.Request) error {
	return c.render(w, r, http.StatusOK, "contacts-import", &view{Title: "Import contacts", Back: "/contacts",
		Form: &form{Values: url.Values{}}, Data: contactsImportData{}})
}

func (c *Console) importContacts(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "text/csv" || mt == "application/json" { // the script's import, streamed
		return c.api.ImportContacts(w, r)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxContactsFile*2+64<<10)
	f := &form{Values: url.Values{}}
	d := contactsImportData{Format: "csv", Existing: subject.ExistingFail}
	body, fh, err := uploaded(r, maxContactsFile, "data")
	if err != nil {
		return err
	}
	if fh != nil {
		ctype, _, _ := mime.ParseMediaType(fh.Header.Get("Content-Type"))
		if strings.EqualFold(path.Ext(fh.Filename), ".json") || ctype == "application/json" {
			d.Format = "json"
		}
	} else if r.PostForm.Get("format") == "json" {
		d.Format = "json"
	}
	if r.FormValue("existing") == subject.ExistingSkip {
		d.Existing = subject.ExistingSkip
	}
	f.Values.Set("existing", d.Existing)
	v := &view{Title: "Import contacts", Back: "/contacts", Form: f, Secret: true}
	switch {
	case len(body) == 0:
		f.add("file", "Choose a CSV or JSON file.")
	case len(body) > maxContactsFile:
		f.add("file", fmt.Sprintf("The file must be smaller than %d MiB. Larger files go through the API.", maxContactsFile>>20))
	}
	if len(f.Problems) > 0 {
		v.Data = d
		return c.render(w, r, http.StatusUnprocessableEntity, "contacts-import", v)
	}
	parse := subject.ParseCSV
	if d.Format == "json" {
		parse = subject.ParseJSON
	}
	rows, problems, err := parse(bytes.NewReader(body))
	if err != nil {
		if f.refused(err, "file", map[string]string{}) {
			v.Data = d
			return c.render(w, r, http.StatusUnprocessableEntity, "contacts-import", v)
		}
		return err
	}
	dryRun := r.FormValue("import") != "yes"
	res, err := c.subjects.Import(r.Context(), signedIn(r).TenantID, rows, problems, d.Existing, dryRun, nil)
	if e, ok := errs.As(err); ok && len(e.Rows) > 0 {
		if n := len(e.Rows); n == 1 {
			f.add("file", "1 row of the file needs correcting, below. Nothing was imported.")
		} else {
			f.add("file", fmt.Sprintf("%d rows of the file need correcting, below. Nothing was imported.", n))
		}
		d.Rows = e.Rows
		v.Data = d
		return c.render(w, r, http.StatusUnprocessableEntity, "contacts-import", v)
	}
	if err != nil {
		if f.refused(err, "file", map[string]string{}) {
			v.Data = d
			return c.render(w, r, http.StatusUnprocessableEntity, "contacts-import", v)
		}
		return err
	}
	if dryRun {
		d.Checked, d.Result, d.Data = true, res, string(body)
		v.Title, v.Data = "Check the import", d
		return c.render(w, r, http.StatusOK, "contacts-import", v)
	}
	return c.redirect(w, r, "/contacts?sort=newest", "contacts-imported")
}

// exportContacts downloads every contact, as the API's export.
func (c *Console) exportContacts(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	if format != "json" {
		format = "csv"
	}
	return c.api.SendContacts(w, r, format)
}
