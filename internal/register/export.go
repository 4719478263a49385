package register

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// Record is the register as exported: the records of processing
// activities a controller shows a supervisory authority (Art. 30(4)).
type Record struct {
	Controller      string    `json:"controller"`
	GeneratedAt     time.Time `json:"generated_at"`
	TaxonomyVersion string    `json:"taxonomy_version"`
	Purposes        []Purpose `json:"purposes"`
}

var csvHeader = []string{"key", "name", "description", "legal_basis", "special_conditions", "data_categories",
	"subject_categories", "recipients", "transfers", "retention_days", "consent_valid_days", "notice_version",
	"notice_sha256", "created_at", "updated_at"}

// Export writes the register of controller's tenant as "csv" or "json".
// Lists are joined with "; " in CSV; cells that a spreadsheet would run
// as formulas are neutralised. The export is audited.
func (s *Service) Export(ctx context.Context, tenantID, controller, format string, w io.Writer) error {
	if format != "csv" && format != "json" {
		return errs.Field("format", "csv or json")
	}
	ps, err := s.List(ctx, tenantID)
	if err != nil {
		return err
	}
	if err := s.log.Record(ctx, tenantID, audit.Event{Action: "register.export", TargetType: "register",
		Details: map[string]any{"format": format, "purposes": len(ps)}}); err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(Record{Controller: controller, GeneratedAt: s.now().UTC().Truncate(time.Second),
			TaxonomyVersion: shipped.Version, Purposes: ps})
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, p := range ps {
		transfers := make([]string, len(p.Transfers))
		for i, t := range p.Transfers {
			transfers[i] = t.Country + " (" + t.Mechanism + ")"
		}
		version, hash := "", ""
		if p.Notice != nil {
			version, hash = strconv.Itoa(p.Notice.Version), p.Notice.SHA256
		}
		row := []string{p.Key, p.Name, p.Description, p.LegalBasis, strings.Join(p.SpecialConditions, "; "),
			strings.Join(p.DataCategories, "; "), strings.Join(p.SubjectCategories, "; "), strings.Join(p.Recipients, "; "),
			strings.Join(transfers, "; "), strconv.Itoa(p.RetentionDays), strconv.Itoa(p.ConsentValidDays), version, hash,
			p.CreatedAt.Format(time.RFC3339), p.UpdatedAt.Format(time.RFC3339)}
		for i := range row {
			row[i] = audit.SafeCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
