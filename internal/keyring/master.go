package keyring

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // base64key:// keepers
)

// MasterKey wraps and unwraps tenant keys. The default is a key file in the
// data dir; any gocloud.dev/secrets URL (KMS, Vault) fits the same interface.
type MasterKey interface {
	Encrypt(ctx context.Context, plaintext []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error)
	Close() error
}

// MasterKeyFile is the default master key file name inside the data dir.
const MasterKeyFile = "master.key"

// OpenMaster opens the master key named by rawURL: empty means the key file
// in dataDir (created, mode 0600, when missing; created reports that);
// file:///path another key file; anything else a gocloud.dev/secrets keeper URL.
func OpenMaster(ctx context.Context, rawURL, dataDir string) (mk MasterKey, created bool, err error) {
	switch {
	case rawURL == "":
		return openKeyFile(filepath.Join(dataDir, MasterKeyFile))
	case strings.HasPrefix(rawURL, "file://"):
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, false, fmt.Errorf("master key url: %w", err)
		}
		return openKeyFile(u.Path)
	default:
		k, err := secrets.OpenKeeper(ctx, rawURL)
		if err != nil {
			return nil, false, fmt.Errorf("open master key keeper: %w", err)
		}
		return k, false, nil
	}
}

type fileKey struct{ key []byte }

func openKeyFile(path string) (MasterKey, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := randomKey()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create master key file: %w", err)
		}
		_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, false, fmt.Errorf("write master key file: %w", err)
		}
		return &fileKey{key: key}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read master key file: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("master key file %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, false, fmt.Errorf("master key file %s: want 32 bytes, base64", path)
	}
	return &fileKey{key: key}, false, nil
}

var masterAD = []byte("custodia/v1 master key wrap")

func (k *fileKey) Encrypt(_ context.Context, plaintext []byte) ([]byte, error) {
	return seal(k.key, 1, masterAD, plaintext), nil
}

func (k *fileKey) Decrypt(_ context.Context, ciphertext []byte) ([]byte, error) {
	return open(k.key, masterAD, ciphertext)
}

func (k *fileKey) Close() error { return nil }
