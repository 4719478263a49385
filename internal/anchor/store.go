package anchor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob" // s3:// anchors
	"gocloud.dev/gcerrors"
)

// Store keeps named objects, each replaced whole.
type Store interface {
	// Put replaces the object name with b, durably: once it returns, a
	// power cut leaves either the old object or b, never a mix.
	Put(ctx context.Context, name string, b []byte) error
	// List returns every object, by name.
	List(ctx context.Context) (map[string][]byte, error)
	// Get returns the object name, or nil when there is none.
	Get(ctx context.Context, name string) ([]byte, error)
	Location() string
	Close() error
}

const suffix = ".json"

// OpenStore opens the store at rawURL: file:///dir (or a plain path) is a
// local directory with durable replacement; any other scheme is a
// gocloud.dev/blob bucket, where one PUT replaces an object atomically.
func OpenStore(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("audit anchor URL: %w", err)
	}
	if u.Scheme == "" || u.Scheme == "file" {
		dir := u.Path
		if dir == "" {
			return nil, fmt.Errorf("audit anchor URL %q: no directory", rawURL)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit anchor: %w", err)
		}
		return dirStore(dir), nil
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("audit anchor: %w", err)
	}
	return &bucketStore{b: b, location: u.Scheme + "://" + u.Host + u.Path}, nil
}

// dirStore is a local directory of objects.
type dirStore string

func (d dirStore) Location() string { return "file://" + string(d) }
func (d dirStore) Close() error     { return nil }

// Put writes b to a temporary file in the directory, syncs it, renames it
// over name and syncs the directory, so the rename itself is durable.
func (d dirStore) Put(_ context.Context, name string, b []byte) error {
	return WriteFileDurably(filepath.Join(string(d), name+suffix), b)
}

// WriteFileDurably replaces path with b so that a crash or power cut at
// any moment leaves either the old content or b: temporary file in the
// same directory, fsync, rename, fsync of the directory.
func WriteFileDurably(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	df, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = df.Sync()
	return errors.Join(err, df.Close())
}

func (d dirStore) Get(_ context.Context, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name+suffix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (d dirStore) List(context.Context) (map[string][]byte, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(string(d), e.Name()))
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// bucketStore is a gocloud.dev/blob bucket (S3 and compatible stores).
type bucketStore struct {
	b        *blob.Bucket
	location string
}

func (s *bucketStore) Location() string { return s.location }
func (s *bucketStore) Close() error     { return s.b.Close() }

func (s *bucketStore) Put(ctx context.Context, name string, b []byte) error {
	return s.b.WriteAll(ctx, name+suffix, b, &blob.WriterOptions{ContentType: "application/json"})
}

func (s *bucketStore) Get(ctx context.Context, name string) ([]byte, error) {
	b, err := s.b.ReadAll(ctx, name+suffix)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, nil
	}
	return b, err
}

func (s *bucketStore) List(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	it := s.b.List(nil)
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		name, ok := strings.CutSuffix(obj.Key, suffix)
		if !ok || obj.IsDir || strings.Contains(name, "/") {
			continue
		}
		b, err := s.b.ReadAll(ctx, obj.Key)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
}
