package backup

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/anchor"
)

// Setup is where backups go and the keys they use, from the operator's
// configuration.
type Setup struct {
	Options
	// Warnings say what the operator should change (the location on the
	// data's own disk, the identity beside the data): printed at every
	// start.
	Warnings []string
	// Fingerprint names the manifest signing key: a restore is told it, to
	// trust nothing else.
	Fingerprint string
	Identity    string        // the age identity file made on the embedded default, if any
	Keep        int           // how many backups are kept
	At          time.Duration // when in a day (UTC, from midnight) the daily backup is due
}

// trustedFile lists, in the data dir, earlier manifest keys the operator
// vouched for by restoring from their backups: one hex public key a line.
const trustedFile = "backup-trusted-keys.txt"

// Trust adds pub to the manifest keys trusted in dataDir: after a restore
// on a new machine, whose own signing key is new, the backups the old one
// signed are still listed, verified and reached by erasures.
func Trust(dataDir string, pub ed25519.PublicKey) error {
	path := filepath.Join(dataDir, trustedFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	line := hex.EncodeToString(pub)
	if strings.Contains(string(b), line) {
		return nil
	}
	return anchor.WriteFileDurably(path, append(b, line+"  # "+Fingerprint(pub)+"\n"...))
}

// Known answers the manifest keys dataDir trusts — its signing key's
// public half, if it has one, and those Trust added — making nothing: a
// listing on a new machine leaves the data dir empty for a restore.
func Known(dataDir string) ([]ed25519.PublicKey, error) {
	keys, err := trusted(dataDir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, "backup-signing.key")
	if _, err := os.Stat(path); err != nil {
		return keys, nil
	}
	key, err := signingKey(path)
	if err != nil {
		return nil, err
	}
	return append(keys, key.Public().(ed25519.PublicKey)), nil
}

// trusted reads the keys Trust added in dataDir.
func trusted(dataDir string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, trustedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []ed25519.PublicKey
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		k, err := hex.DecodeString(f[0])
		if err != nil || len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: %q is not a public key", trustedFile, f[0])
		}
		out = append(out, k)
	}
	return out, err
}

// Prepare reads or makes the backup keys: the manifest signing key in
// dataDir (never in a backup), and, when no recipient is configured, an
// age identity in dataDir to encrypt to — with a warning that it should
// live off this machine.
func Prepare(dataDir, dir string, recipients []string, keep int, now func() time.Time) (Setup, error) {
	s := Setup{Keep: keep, Options: Options{Dir: dir, Now: now}}
	if s.Keep < 1 {
		return s, fmt.Errorf("backups kept: %d; want 1 or more", keep)
	}
	var err error
	if s.Signer, err = signingKey(filepath.Join(dataDir, "backup-signing.key")); err != nil {
		return s, err
	}
	s.Fingerprint = Fingerprint(s.Signer.Public().(ed25519.PublicKey))
	if s.Trusted, err = trusted(dataDir); err != nil {
		return s, err
	}
	s.Trusted = append([]ed25519.PublicKey{s.Signer.Public().(ed25519.PublicKey)}, s.Trusted...)
	for _, r := range recipients {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		rs, err := age.ParseRecipients(strings.NewReader(r))
		if err != nil {
			return s, fmt.Errorf("backup recipient %q: %w", r, err)
		}
		s.Recipients = append(s.Recipients, rs...)
	}
	if len(s.Recipients) == 0 {
		s.Identity = filepath.Join(dataDir, "backup-identity.txt")
		id, err := identity(s.Identity)
		if err != nil {
			return s, err
		}
		s.Recipients = []age.Recipient{id.Recipient()}
		s.Warnings = append(s.Warnings, "backups are encrypted to an age identity kept beside the data ("+s.Identity+
			"): copy it off this machine, delete it here, and set CUSTODIA_BACKUP_RECIPIENTS to its public key "+id.Recipient().String())
	}
	if abs, err := filepath.Abs(dir); err == nil {
		if data, err := filepath.Abs(dataDir); err == nil && (abs == data || strings.HasPrefix(abs, data+string(filepath.Separator))) {
			s.Warnings = append(s.Warnings, "backups are kept in the data directory ("+dir+"), on the same disk as the data: losing the disk loses them too; set CUSTODIA_BACKUP_DIR to another disk or machine")
		}
	}
	return s, nil
}

// signingKey reads, or makes on first use, the ed25519 key at path.
func signingKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := anchor.WriteFileDurably(path, []byte(hex.EncodeToString(seed)+"\n")); err != nil {
			return nil, fmt.Errorf("backup signing key: %w", err)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup signing key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("backup signing key %s: not a key this program wrote", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// identity reads, or makes on first use, the age identity file at path.
func identity(path string) (*age.X25519Identity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, err
		}
		text := "# The age identity that decrypts Custodia's backups. Keep it off this machine.\n# public key: " +
			id.Recipient().String() + "\n" + id.String() + "\n"
		if err := anchor.WriteFileDurably(path, []byte(text)); err != nil {
			return nil, fmt.Errorf("backup identity: %w", err)
		}
		return id, nil
	}
	if err != nil {
		return nil, err
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(b)))
	if err != nil || len(ids) == 0 {
		return nil, fmt.Errorf("backup identity %s: %v", path, err)
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("backup identity %s: not an X25519 identity", path)
	}
	return id, nil
}
