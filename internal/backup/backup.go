package backup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/anchor"
	"github.com/custodia/custodia/internal/sqldb"
)

// A backup is a directory of the backup location named by its UTC time:
// database.age (the snapshot, encrypted to the operator's age
// recipients), keys/ (the shards, see WriteShards) and manifest.json with
// its signature, manifest.sig. A backup being written is a hidden
// directory, renamed into place once whole: a listing never shows half of
// one.

// Format names the manifest's format.
const Format = "custodia/v1 backup"

// Manifest says what a backup holds; it is signed.
type Manifest struct {
	Format    string      `json:"format"`
	ID        string      `json:"id"`     // also the directory's name
	Engine    string      `json:"engine"` // sqlite or postgres: what the database part restores into
	CreatedAt time.Time   `json:"created_at"`
	Database  Part        `json:"database"`
	Keys      []ShardInfo `json:"keys"`
	// Signer is the public half of the manifest key, hex: a restore on
	// another machine trusts it only when its fingerprint is the one the
	// operator gives.
	Signer string `json:"signer"`
	Schema int    `json:"schema"` // the database copy's schema version
	// Heads are each tenant's signed audit head in the copy: a restore
	// anchors them, a verify with the identity checks the chains reach
	// them.
	Heads map[string]anchor.Head `json:"heads"`
	// Files is the content of each region the snapshot refers to, copied
	// in that region.
	Files      []RegionFiles `json:"files"`
	Generation int           `json:"generation"` // one more each time an erasure rewrote a shard
	Forgotten  int           `json:"forgotten"`  // keys removed from the shards since the backup was made
}

// Part is one file of a backup.
type Part struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Options say where backups go and how they are sealed.
type Options struct {
	Dir        string             // the backup location, a local directory
	Recipients []age.Recipient    // who can decrypt the database copies
	Signer     ed25519.PrivateKey // signs the manifests; kept outside the backups
	Regions    Regions            // where file content is, and its copies
	// Trusted are the keys whose manifests are believed: Signer's public
	// half, and the keys of backups restored from (Trust).
	Trusted []ed25519.PublicKey
	// Ledger, when set, is copied into the location's ledger directory
	// before each backup completes.
	Ledger interface{ CopyTo(dir string) error }
	Now    func() time.Time
}

// Run makes a backup of the database db (SQLite or PostgreSQL) into o.Dir
// and answers its manifest.
func Run(ctx context.Context, db *sqldb.DB, o Options) (Manifest, error) {
	if len(o.Recipients) == 0 {
		return Manifest{}, errors.New("backup: no age recipient to encrypt to")
	}
	now := o.Now().UTC().Truncate(time.Second)
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return Manifest{}, err
	}
	m := Manifest{Format: Format, ID: now.Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix), CreatedAt: now}
	work := filepath.Join(o.Dir, "."+m.ID+".partial")
	defer os.RemoveAll(work) // what is left of a failed run
	// Content deletions wait until the content the snapshot refers to is
	// copied (package files reads blob_holds).
	if err := hold(ctx, db, m.ID, now.Add(holdFor)); err != nil {
		return Manifest{}, err
	}
	defer release(db, m.ID)
	m.Engine = db.Dialect().String()
	snapshot := SnapshotSQLite
	if db.Dialect() == sqldb.Postgres {
		snapshot = SnapshotPostgres
	}
	snap, err := snapshot(ctx, db, work)
	if err != nil {
		return Manifest{}, err
	}
	m.Keys, m.Schema, m.Heads = snap.Keys, snap.Schema, snap.Heads
	var prev map[string]map[string]object
	if kept, err := List(o.Dir, slices.Concat(o.Trusted, []ed25519.PublicKey{o.Signer.Public().(ed25519.PublicKey)})...); err == nil && len(kept) > 0 {
		prev, _ = lists(o.Dir, kept[0]) // what it cannot read is copied again
	}
	if m.Files, err = copyContent(ctx, o.Regions, work, snap.Blobs, prev); err != nil {
		return Manifest{}, err
	}
	release(db, m.ID)
	m.Signer = hex.EncodeToString(o.Signer.Public().(ed25519.PublicKey))
	if m.Database, err = encrypt(snap.Database, filepath.Join(work, "database.age"), o.Recipients); err != nil {
		return Manifest{}, err
	}
	if err := os.Remove(snap.Database); err != nil {
		return Manifest{}, err
	}
	if o.Ledger != nil {
		if err := o.Ledger.CopyTo(LedgerDir(o.Dir)); err != nil {
			return Manifest{}, fmt.Errorf("copy the ledger: %w", err)
		}
	}
	if err := writeManifest(work, m, o.Signer); err != nil {
		return Manifest{}, err
	}
	if err := os.Rename(work, filepath.Join(o.Dir, m.ID)); err != nil {
		return Manifest{}, err
	}
	return m, syncDir(o.Dir)
}

// LedgerDir is where a backup location keeps the nodes' ledgers.
func LedgerDir(dir string) string { return filepath.Join(dir, "ledger") }

// isBackup reports whether an entry of a location is a backup: a
// directory but the ledger's, and not one being written (hidden).
func isBackup(e os.DirEntry) bool {
	return e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "ledger"
}

// holdFor bounds a backup's hold on content deletions, should the process
// die before it ends it.
const holdFor = 6 * time.Hour

// hold makes content deletions wait until release (or until).
func hold(ctx context.Context, db *sqldb.DB, id string, until time.Time) error {
	return db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO blob_holds (id, until_at) VALUES (?, ?)", id, until.UnixMicro())
		return err
	})
}

// release ends a hold; deletions that waited are the sweeper's.
func release(db *sqldb.DB, id string) {
	_ = db.WithTx(context.Background(), func(ctx context.Context, tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM blob_holds WHERE id = ?", id)
		return err
	})
}

// encrypt writes the age encryption of the file src to dst, durably, and
// answers what dst is.
func encrypt(src, dst string, to []age.Recipient) (Part, error) {
	in, err := os.Open(src)
	if err != nil {
		return Part{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Part{}, err
	}
	defer out.Close()
	h := sha256.New()
	counted := &counter{w: io.MultiWriter(out, h)}
	w, err := age.Encrypt(counted, to...)
	if err != nil {
		return Part{}, err
	}
	if _, err := io.Copy(w, in); err != nil {
		return Part{}, err
	}
	if err := w.Close(); err != nil {
		return Part{}, err
	}
	if err := out.Sync(); err != nil {
		return Part{}, err
	}
	return Part{Name: filepath.Base(dst), Bytes: counted.n, SHA256: hex.EncodeToString(h.Sum(nil))}, out.Close()
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// signed is the bytes a manifest's signature covers.
func signed(b []byte) []byte { return append([]byte(Format+" manifest\x00"), b...) }

// writeManifest writes m and its signature into dir, durably.
func writeManifest(dir string, m Manifest, key ed25519.PrivateKey) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := anchor.WriteFileDurably(filepath.Join(dir, "manifest.json"), b); err != nil {
		return err
	}
	sig := hex.EncodeToString(ed25519.Sign(key, signed(b)))
	return anchor.WriteFileDurably(filepath.Join(dir, "manifest.sig"), []byte(sig+"\n"))
}

// Fingerprint names a manifest key: what `serve` prints and a restore is
// given.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

// Trusted reads the manifest of the backup id of dir, signed by the key
// whose fingerprint is given: on a machine without the signing key (a
// restore elsewhere) the manifest's own signer is trusted only when its
// fingerprint is that one.
func Trusted(dir, id, fingerprint string) (Manifest, ed25519.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, id, "manifest.json"))
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("backup %s: %w", id, err)
	}
	var m struct{ Signer string }
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, nil, fmt.Errorf("backup %s: not a backup manifest", id)
	}
	pub, err := hex.DecodeString(m.Signer)
	if err != nil || len(pub) != ed25519.PublicKeySize || Fingerprint(pub) != fingerprint {
		return Manifest{}, nil, fmt.Errorf("backup %s: its manifest is not signed by the key %s", id, fingerprint)
	}
	man, err := readManifest(filepath.Join(dir, id), ed25519.PublicKey(pub))
	return man, pub, err
}

// readManifest reads the manifest of the backup in dir, checking its
// signature with the trusted keys.
func readManifest(dir string, trusted ...ed25519.PublicKey) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return Manifest{}, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, "manifest.sig"))
	if err != nil {
		return Manifest{}, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(sig)))
	if err != nil || !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, signed(b), raw) }) {
		return Manifest{}, fmt.Errorf("backup %s: the manifest's signature does not verify with a trusted key", filepath.Base(dir))
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != Format {
		return Manifest{}, fmt.Errorf("backup %s: not a backup manifest", filepath.Base(dir))
	}
	return m, nil
}

// List answers the backups of dir, newest first, their manifests checked
// with the trusted keys.
func List(dir string, trusted ...ed25519.PublicKey) ([]Manifest, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Manifest
	for _, e := range entries {
		if !isBackup(e) {
			continue
		}
		m, err := readManifest(filepath.Join(dir, e.Name()), trusted...)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return strings.Compare(b.ID, a.ID) })
	return out, nil
}

// Listed is a backup of a location as a listing shows it, trusted or not.
type Listed struct {
	Manifest
	Fingerprint string // of the key that signed it, as the manifest names it
	Trusted     bool   // signed by that key, and the key is one of those given
	Problem     string // why it is not trusted
}

// Inspect answers every backup of dir, newest first, saying of each
// whether a trusted key signed it: on a new machine, before a restore
// trusts the fingerprint it is given, a listing still shows what is there.
func Inspect(dir string, trusted ...ed25519.PublicKey) ([]Listed, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, e := range entries {
		if !isBackup(e) {
			continue
		}
		l := Listed{Manifest: Manifest{ID: e.Name()}}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "manifest.json"))
		if err == nil {
			err = json.Unmarshal(b, &l.Manifest)
		}
		pub, _ := hex.DecodeString(l.Signer)
		switch {
		case err != nil:
			l.Problem = "no readable manifest"
		case len(pub) != ed25519.PublicKeySize:
			l.Problem = "the manifest names no signing key"
		default:
			l.Fingerprint = Fingerprint(pub)
			if _, err := readManifest(filepath.Join(dir, e.Name()), ed25519.PublicKey(pub)); err != nil {
				l.Problem = "its signature does not verify (altered)"
			} else if !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return k.Equal(ed25519.PublicKey(pub)) }) {
				l.Problem = "signed by " + l.Fingerprint + ", a key not trusted here"
			} else {
				l.Trusted = true
			}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listed) int { return strings.Compare(b.ID, a.ID) })
	return out, nil
}

// Verify checks the backup id of dir without any private key: its
// manifest's signature, and the size and SHA-256 of every part. It names
// the first part that differs.
func Verify(dir, id string, trusted ...ed25519.PublicKey) error {
	at := filepath.Join(dir, id)
	m, err := readManifest(at, trusted...)
	if err != nil {
		return err
	}
	return verifyParts(at, m)
}

// verifyParts checks the size and SHA-256 of every part of the backup in
// at against its manifest m.
func verifyParts(at string, m Manifest) error {
	id := m.ID
	parts := []Part{m.Database}
	for _, f := range m.Files {
		parts = append(parts, f.List)
	}
	for _, k := range m.Keys {
		parts = append(parts, Part{Name: filepath.Join("keys", k.Name), Bytes: k.Bytes, SHA256: k.SHA256})
	}
	for _, p := range parts {
		f, err := os.Open(filepath.Join(at, p.Name))
		if err != nil {
			return fmt.Errorf("backup %s: %s is missing", id, p.Name)
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if n != p.Bytes || hex.EncodeToString(h.Sum(nil)) != p.SHA256 {
			return fmt.Errorf("backup %s: %s differs from its manifest (altered or damaged)", id, p.Name)
		}
	}
	return nil
}

// Prune deletes the backups of dir beyond the keep newest.
func Prune(dir string, keep int, trusted ...ed25519.PublicKey) ([]string, error) {
	ms, err := List(dir, trusted...)
	if err != nil || len(ms) <= keep {
		return nil, err
	}
	var gone []string
	for _, m := range ms[keep:] {
		if err := os.RemoveAll(filepath.Join(dir, m.ID)); err != nil {
			return gone, err
		}
		gone = append(gone, m.ID)
	}
	return gone, syncDir(dir)
}

// Forget removes a subject's data key from every backup of dir: its shard
// is written again without it and the manifest signed again with key (a
// backup a trusted earlier key signed too). Nothing is decrypted. It answers how many backups held the key.
func Forget(dir, tenantID, subjectID string, key ed25519.PrivateKey, trusted ...ed25519.PublicKey) (int, error) {
	ms, err := List(dir, slices.Concat(trusted, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})...)
	if err != nil {
		return 0, err
	}
	held := 0
	for _, m := range ms {
		at := filepath.Join(dir, m.ID)
		info, was, err := ForgetKey(filepath.Join(at, "keys"), tenantID, subjectID)
		if err != nil {
			return held, fmt.Errorf("backup %s: %w", m.ID, err)
		}
		if !was {
			continue
		}
		held++
		for i := range m.Keys {
			if m.Keys[i].Name == info.Name {
				m.Keys[i] = info
			}
		}
		m.Generation++
		m.Forgotten++
		if err := writeManifest(at, m, key); err != nil {
			return held, err
		}
	}
	return held, nil
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
