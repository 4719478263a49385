// Package tenant manages tenants: the organisations (data controllers) that
// keep their data in Custodia, each with its own key hierarchy and region.
package tenant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on machines without a zoneinfo database

	"github.com/google/uuid"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
)

// Tenant is one organisation.
type Tenant struct {
	ID       string `json:"id"`
	Slug     string `json:"slug"`
	Name     string `json:"name"`
	Region   string `json:"region"`
	Status   string `json:"status"`
	TimeZone string `json:"time_zone"` // IANA name; request deadlines end at midnight here
	// ClosureGraceDays is how long a member's account stays after they
	// close it (and can still cancel) before it is erased.
	ClosureGraceDays int `json:"account_closure_grace_days"`
	// AllowedRegions narrows the operator's regions for the tenant's
	// spaces; empty means every configured region.
	AllowedRegions []string `json:"allowed_regions"`
	// TrashDays is how long deleted files, folders and spaces stay
	// retrievable before they are purged.
	TrashDays int `json:"trash_days"`
	// VersionsKept is how many versions of each file are kept, the
	// newest; older ones are deleted. 0 keeps them all.
	VersionsKept int `json:"versions_kept"`
	// QuotaBytes bounds the bytes of every stored file version; 0 is no
	// bound. The operator sets it.
	QuotaBytes int64 `json:"quota_bytes"`
	// LinkedFilesOnErasure says what erasing a data subject does to the
	// files and folders linked to them: LinkedDelete or LinkedKeep.
	LinkedFilesOnErasure string    `json:"linked_files_on_erasure"`
	CreatedAt            time.Time `json:"created_at"`
}

// What erasing a subject does to the files linked to them.
const (
	LinkedDelete = "delete" // the files and folders go, with every version
	LinkedKeep   = "keep"   // only the links go (files the controller must keep, Art. 17(3)(b))
)

// Location is the tenant's time zone.
func (t Tenant) Location() *time.Location {
	if loc, err := time.LoadLocation(t.TimeZone); err == nil {
		return loc
	}
	return time.UTC
}

// Service creates and finds tenants.
type Service struct {
	db      *sqldb.DB
	keys    *keyring.Keyring
	log     *audit.Log
	regions []string
	now     func() time.Time
}

// NewService returns a Service; regions are the operator's configured regions.
func NewService(db *sqldb.DB, keys *keyring.Keyring, log *audit.Log, regions []string, now func() time.Time) *Service {
	return &Service{db: db, keys: keys, log: log, regions: regions, now: now}
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// Create makes a tenant with its keys. region "" means the first configured region.
func (s *Service) Create(ctx context.Context, slug, name, region string) (Tenant, error) {
	slug, name = strings.TrimSpace(slug), strings.TrimSpace(name)
	if !slugRE.MatchString(slug) {
		return Tenant{}, errs.Field("slug", "2–63 characters: lowercase letters, digits and '-', starting with a letter or digit")
	}
	if name == "" || len(name) > 200 {
		return Tenant{}, errs.Field("name", "required, at most 200 characters")
	}
	if region == "" && len(s.regions) > 0 {
		region = s.regions[0]
	}
	if err := s.CheckRegion(region); err != nil {
		return Tenant{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Tenant{}, err
	}
	t := Tenant{ID: id.String(), Slug: slug, Name: name, Region: region, Status: "active", TimeZone: "UTC", CreatedAt: s.now().UTC().Truncate(time.Microsecond)}
	tk, err := s.keys.NewTenantKeys(ctx, t.ID)
	if err != nil {
		return Tenant{}, fmt.Errorf("make tenant keys: %w", err)
	}
	err = s.log.Commit(ctx, t.ID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.Slug, t.Name, t.Region, t.Status, t.CreatedAt.UnixMicro())
		if sqldb.IsUniqueViolation(err) {
			return errs.Field("slug", "a tenant with this slug already exists")
		}
		if err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		return tk.Insert(ctx, tx)
	}, audit.Event{Action: "tenant.create", TargetType: "tenant", TargetID: t.ID,
		Details: map[string]any{"slug": t.Slug, "region": t.Region}})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// CheckAllowed refuses a region the operator has not configured or the
// tenant does not allow.
func (s *Service) CheckAllowed(t Tenant, region string) error {
	if err := s.CheckRegion(region); err != nil {
		return err
	}
	if len(t.AllowedRegions) > 0 && !slices.Contains(t.AllowedRegions, region) {
		return errs.Field("region", "this organisation keeps files only in: %s", strings.Join(t.AllowedRegions, ", "))
	}
	return nil
}

// Regions answers the regions t may keep content in: those it allows, or
// every configured one.
func (s *Service) Regions(t Tenant) []string {
	if len(t.AllowedRegions) > 0 {
		return slices.Clone(t.AllowedRegions)
	}
	return slices.Clone(s.regions)
}

// CheckRegion refuses a region the operator has not configured.
func (s *Service) CheckRegion(region string) error {
	if !slices.Contains(s.regions, region) {
		return errs.Field("region", "unknown region (configured: %s)", strings.Join(s.regions, ", "))
	}
	return nil
}

// ActiveIDs lists the ids of every active tenant, for the jobs that go
// through them all.
func (s *Service) ActiveIDs(ctx context.Context) ([]string, error) {
	return s.db.Read().Strings(ctx, "SELECT id FROM tenants WHERE status = 'active' ORDER BY id")
}

// BySlug finds a tenant by slug.
func (s *Service) BySlug(ctx context.Context, slug string) (Tenant, error) {
	return s.find(ctx, "slug", slug)
}

// ByID finds a tenant by id.
func (s *Service) ByID(ctx context.Context, id string) (Tenant, error) {
	return s.find(ctx, "id", id)
}

func (s *Service) find(ctx context.Context, column, value string) (Tenant, error) {
	var t Tenant
	var created int64
	var allowed string
	err := s.db.Read().QueryRow(ctx, `SELECT id, slug, name, region, status, time_zone, closure_grace_days, allowed_regions, trash_days, quota_bytes,
			linked_files_on_erasure, versions_kept, created_at
		FROM tenants WHERE `+column+" = ?", value).
		Scan(&t.ID, &t.Slug, &t.Name, &t.Region, &t.Status, &t.TimeZone, &t.ClosureGraceDays, &allowed, &t.TrashDays, &t.QuotaBytes,
			&t.LinkedFilesOnErasure, &t.VersionsKept, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, errs.E(errs.NotFound, "no tenant %q", value)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("find tenant: %w", err)
	}
	t.CreatedAt = time.UnixMicro(created).UTC()
	if err := json.Unmarshal([]byte(allowed), &t.AllowedRegions); err != nil {
		return Tenant{}, fmt.Errorf("tenant %s allowed_regions: %w", t.ID, err)
	}
	return t, nil
}

// Organisation is what an admin sets about the tenant.
// Fields left out (nil) are unchanged.
type Organisation struct {
	TimeZone         string    `json:"time_zone"`
	ClosureGraceDays *int      `json:"account_closure_grace_days"`
	Region           *string   `json:"region"`          // the default region of new spaces
	AllowedRegions   *[]string `json:"allowed_regions"` // empty: every configured region
	TrashDays        *int      `json:"trash_days"`
	// VersionsKept: 0 (all) to MaxVersionsKept.
	VersionsKept *int `json:"versions_kept"`
	// LinkedFilesOnErasure: LinkedDelete or LinkedKeep.
	LinkedFilesOnErasure *string `json:"linked_files_on_erasure"`
}

// MaxTrashDays bounds how long the trash keeps items.
const MaxTrashDays = 3650

// MaxVersionsKept bounds the versions_kept setting (0 keeps all).
const MaxVersionsKept = 10000

// MaxClosureGraceDays bounds the grace period of account closure.
const MaxClosureGraceDays = 365

// SetOrganisation changes the tenant's time zone (an IANA name such as
// Europe/Paris; deadlines already computed keep their instant) and, when
// given, the grace period of account closure (0–365 days).
func (s *Service) SetOrganisation(ctx context.Context, tenantID string, in Organisation) (Tenant, error) {
	zone := strings.TrimSpace(in.TimeZone)
	if _, err := time.LoadLocation(zone); err != nil || zone == "" || zone == "Local" {
		return Tenant{}, errs.Field("time_zone", "an IANA time zone name, e.g. Europe/Paris")
	}
	if g := in.ClosureGraceDays; g != nil && (*g < 0 || *g > MaxClosureGraceDays) {
		return Tenant{}, errs.Field("account_closure_grace_days", "0 to %d days", MaxClosureGraceDays)
	}
	old, err := s.ByID(ctx, tenantID)
	if err != nil {
		return Tenant{}, err
	}
	t := old
	t.TimeZone = zone
	if in.ClosureGraceDays != nil {
		t.ClosureGraceDays = *in.ClosureGraceDays
	}
	if in.AllowedRegions != nil {
		t.AllowedRegions = []string{}
		for _, r := range *in.AllowedRegions {
			if err := s.CheckRegion(r); err != nil {
				return Tenant{}, errs.Field("allowed_regions", "%q: unknown region (configured: %s)", r, strings.Join(s.regions, ", "))
			}
			if !slices.Contains(t.AllowedRegions, r) {
				t.AllowedRegions = append(t.AllowedRegions, r)
			}
		}
	}
	if in.Region != nil {
		t.Region = *in.Region
	}
	if err := s.CheckAllowed(t, t.Region); err != nil {
		return Tenant{}, err
	}
	if d := in.TrashDays; d != nil {
		if *d < 1 || *d > MaxTrashDays {
			return Tenant{}, errs.Field("trash_days", "1 to %d days", MaxTrashDays)
		}
		t.TrashDays = *d
	}
	if k := in.VersionsKept; k != nil {
		if *k < 0 || *k > MaxVersionsKept {
			return Tenant{}, errs.Field("versions_kept", "0 (keep every version) to %d", MaxVersionsKept)
		}
		t.VersionsKept = *k
	}
	if l := in.LinkedFilesOnErasure; l != nil {
		if *l != LinkedDelete && *l != LinkedKeep {
			return Tenant{}, errs.Field("linked_files_on_erasure", "%q or %q", LinkedDelete, LinkedKeep)
		}
		t.LinkedFilesOnErasure = *l
	}
	allowed, err := json.Marshal(t.AllowedRegions)
	if err != nil {
		return Tenant{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenants SET time_zone = ?, closure_grace_days = ?, region = ?, allowed_regions = ?, trash_days = ?,
			versions_kept = ?, linked_files_on_erasure = ? WHERE id = ?`,
			t.TimeZone, t.ClosureGraceDays, t.Region, string(allowed), t.TrashDays, t.VersionsKept, t.LinkedFilesOnErasure, tenantID)
		return err
	}, audit.Event{Action: "tenant.organisation", TargetType: "tenant", TargetID: tenantID,
		Details: map[string]any{"time_zone": []string{old.TimeZone, t.TimeZone}, "account_closure_grace_days": []int{old.ClosureGraceDays, t.ClosureGraceDays},
			"region": []string{old.Region, t.Region}, "allowed_regions": [][]string{old.AllowedRegions, t.AllowedRegions}, "trash_days": []int{old.TrashDays, t.TrashDays},
			"versions_kept": []int{old.VersionsKept, t.VersionsKept}, "linked_files_on_erasure": []string{old.LinkedFilesOnErasure, t.LinkedFilesOnErasure}}})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// SetQuota sets how many bytes of file versions the tenant may store (0:
// no bound). The operator sets it; it is audited in the tenant's trail.
func (s *Service) SetQuota(ctx context.Context, tenantID string, bytes int64) (Tenant, error) {
	if bytes < 0 {
		return Tenant{}, errs.Field("quota_bytes", "0 (no bound) or more")
	}
	old, err := s.ByID(ctx, tenantID)
	if err != nil {
		return Tenant{}, err
	}
	err = s.log.Commit(ctx, tenantID, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE tenants SET quota_bytes = ? WHERE id = ?", bytes, tenantID)
		return err
	}, audit.Event{Action: "tenant.quota", TargetType: "tenant", TargetID: tenantID,
		Details: map[string]any{"quota_bytes": []int64{old.QuotaBytes, bytes}}})
	old.QuotaBytes = bytes
	return old, err
}
