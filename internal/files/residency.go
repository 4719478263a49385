package files

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/identity"
)

// Residency is the "where is my data" report of a tenant.
type Residency struct {
	GeneratedAt    time.Time `json:"generated_at"`
	DefaultRegion  string    `json:"default_region"`
	AllowedRegions []string  `json:"allowed_regions"` // empty: every configured region
	QuotaBytes     int64     `json:"quota_bytes"`     // 0: no bound
	UsedBytes      int64     `json:"used_bytes"`      // every stored version, as uploaded
	Database       Place     `json:"database"`
	Backups        []Place   `json:"backups"` // where backups of the tenant's data are kept, newest first
	// LastRestoreDrill is the last check that a backup restores (custodia
	// backup verify --identity), if any.
	LastRestoreDrill *Drill `json:"last_restore_drill,omitempty"`
	// Restore says where a restore puts what the backups hold.
	Restore string        `json:"restore,omitempty"`
	Regions []RegionUse   `json:"regions"`
	Spaces  []SpaceRecord `json:"spaces"`
}

// Place is where something is kept.
type Place struct {
	Kind     string     `json:"kind"`
	Location string     `json:"location"`
	At       *time.Time `json:"at,omitempty"`     // a backup: when it was made
	Bytes    int64      `json:"bytes,omitempty"`  // a backup: its size
	Region   string     `json:"region,omitempty"` // a backup of file content: the region it stays in
}

// Drill is a restore drill's outcome.
type Drill struct {
	At     time.Time `json:"at"`
	Backup string    `json:"backup"`
	OK     bool      `json:"ok"`
}

// RegionUse is what the tenant keeps in one region.
type RegionUse struct {
	Name     string `json:"name"`
	Location string `json:"location"`
	Spaces   int    `json:"spaces"`
	Objects  int64  `json:"objects"`
	Bytes    int64  `json:"bytes"` // as stored: sealed
}

// SpaceRecord is where one space's content is.
type SpaceRecord struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Region      string `json:"region"`
	MigratingTo string `json:"migrating_to,omitempty"`
	InTrash     bool   `json:"in_trash"`
	Objects     int64  `json:"objects"`
	Bytes       int64  `json:"bytes"` // as stored: sealed
}

// Residency reports, for every space of p's tenant (also those in the
// trash), the region holding its content with the number of objects and
// bytes there (file versions, and parts of uploads under way), and where
// the database and backups are.
func (s *Service) Residency(ctx context.Context, p identity.Principal) (Residency, error) {
	t, err := s.tenants.ByID(ctx, p.TenantID)
	if err != nil {
		return Residency{}, err
	}
	dk, err := s.keys.TenantDataKey(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Residency{}, err
	}
	used, err := s.used(ctx, s.db.Read(), p.TenantID)
	if err != nil {
		return Residency{}, err
	}
	r := Residency{GeneratedAt: s.now().UTC(), DefaultRegion: t.Region, AllowedRegions: t.AllowedRegions, QuotaBytes: t.QuotaBytes, UsedBytes: used,
		Database: Place{Kind: s.db.Dialect().String(), Location: s.db.Location()}, Backups: []Place{}, Spaces: []SpaceRecord{}}
	rows, err := s.db.Read().Query(ctx, `SELECT s.id, s.name_ct, s.region, s.migrating_to, s.trashed_at,
			(SELECT COUNT(*) FROM file_versions v WHERE v.tenant_id = s.tenant_id AND v.space_id = s.id) +
				(SELECT COUNT(*) FROM upload_parts up JOIN upload_sessions us ON us.tenant_id = up.tenant_id AND us.id = up.session_id
				WHERE us.tenant_id = s.tenant_id AND us.space_id = s.id),
			(SELECT COALESCE(SUM(v.sealed_size), 0) FROM file_versions v WHERE v.tenant_id = s.tenant_id AND v.space_id = s.id) +
				(SELECT COALESCE(SUM(up.sealed_size), 0) FROM upload_parts up JOIN upload_sessions us ON us.tenant_id = up.tenant_id AND us.id = up.session_id
				WHERE us.tenant_id = s.tenant_id AND us.space_id = s.id)
		FROM spaces s WHERE s.tenant_id = ? ORDER BY s.id`, p.TenantID)
	if err != nil {
		return Residency{}, err
	}
	defer rows.Close()
	use := map[string]*RegionUse{}
	for _, name := range s.regions.Names() {
		st, _ := s.regions.Store(name)
		use[name] = &RegionUse{Name: name, Location: st.Location}
	}
	for rows.Next() {
		var sp SpaceRecord
		var ct []byte
		var trashed int64
		if err := rows.Scan(&sp.ID, &ct, &sp.Region, &sp.MigratingTo, &trashed, &sp.Objects, &sp.Bytes); err != nil {
			return Residency{}, err
		}
		name, err := dk.Open("spaces", "name_ct", sp.ID, ct)
		if err != nil {
			return Residency{}, err
		}
		sp.Name, sp.InTrash = string(name), trashed > 0
		r.Spaces = append(r.Spaces, sp)
		u, ok := use[sp.Region]
		if !ok { // a region the operator no longer configures still holds it
			u = &RegionUse{Name: sp.Region, Location: "not configured on this server"}
			use[sp.Region] = u
		}
		u.Spaces++
	}
	if err := rows.Err(); err != nil {
		return Residency{}, err
	}
	// Objects are counted where they are: during a move, in both regions;
	// the parts of uploads under way too.
	vrows, err := s.db.Read().Query(ctx, `SELECT region, COUNT(*), COALESCE(SUM(sealed_size), 0) FROM (
			SELECT region, sealed_size FROM file_versions WHERE tenant_id = ?
			UNION ALL SELECT region, sealed_size FROM upload_parts WHERE tenant_id = ?) o
		GROUP BY region`, p.TenantID, p.TenantID)
	if err != nil {
		return Residency{}, err
	}
	defer vrows.Close()
	for vrows.Next() {
		var region string
		var n, bytes int64
		if err := vrows.Scan(&region, &n, &bytes); err != nil {
			return Residency{}, err
		}
		u, ok := use[region]
		if !ok {
			u = &RegionUse{Name: region, Location: "not configured on this server"}
			use[region] = u
		}
		u.Objects += n
		u.Bytes += bytes
	}
	if err := vrows.Err(); err != nil {
		return Residency{}, err
	}
	for _, name := range s.regions.Names() {
		r.Regions = append(r.Regions, *use[name])
		delete(use, name)
	}
	for _, u := range use {
		r.Regions = append(r.Regions, *u)
	}
	return r, nil
}
