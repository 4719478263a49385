package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// dirStore keeps a region in a local directory, durably: a Put returns
// only once the object's bytes and its name are on the disk (file fsync,
// rename into place, fsync of the directory and of every directory it had
// to create), so the database commit that follows never announces content
// a power cut could lose. Files are 0600 and directories 0700 whatever the
// umask. gocloud's fileblob does neither (docs/decisions/0020-durable-local-blobs.md).
type dirStore struct {
	root string
	disk disk
}

// disk is the seam through which dirStore makes its writes durable; tests
// record the order of syncs and renames through it.
type disk interface {
	Sync(f *os.File) error
	Rename(from, to string) error
	SyncDir(dir string) error
	Mkdir(dir string) error
	Remove(path string) error
}

type osDisk struct{}

func (osDisk) Sync(f *os.File) error        { return f.Sync() }
func (osDisk) Rename(from, to string) error { return os.Rename(from, to) }
func (osDisk) Mkdir(dir string) error       { return os.Mkdir(dir, 0o700) }
func (osDisk) Remove(path string) error     { return os.Remove(path) }
func (osDisk) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// tmpPrefix marks a write in progress; List never shows such files.
const tmpPrefix = ".tmp-"

func openDir(root string, d disk) (*dirStore, error) {
	if root == "" {
		return nil, errors.New("a file:// region needs a path")
	}
	s := &dirStore{root: filepath.Clean(root), disk: d}
	if _, err := s.mkdirs(s.root); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *dirStore) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

// mkdirs creates dir and its missing parents, 0700, and answers the
// parents whose entries changed (to be synced once the write is done).
func (s *dirStore) mkdirs(dir string) ([]string, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", dir)
		}
		return nil, nil
	}
	parent := filepath.Dir(dir)
	var changed []string
	if parent != dir {
		c, err := s.mkdirs(parent)
		if err != nil {
			return nil, err
		}
		changed = c
	}
	if err := s.disk.Mkdir(dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return append(changed, parent), nil
}

func (s *dirStore) put(ctx context.Context, key string, r io.Reader) (int64, error) {
	path := s.path(key)
	dir := filepath.Dir(path)
	created, err := s.mkdirs(dir)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*") // 0600
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, &ctxReader{ctx: ctx, r: r}, make([]byte, 1<<20))
	if err == nil {
		err = s.disk.Sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.disk.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return n, err
	}
	// The new name, then the entry of every directory created on the way.
	for _, d := range append([]string{dir}, created...) {
		if err := s.disk.SyncDir(d); err != nil {
			return n, err
		}
	}
	return n, nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *dirStore) get(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

func (s *dirStore) size(_ context.Context, key string) (int64, error) {
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fs.ErrNotExist
	}
	return fi.Size(), nil
}

// delete removes key and makes the removal durable: purged content must
// not come back after a power cut.
func (s *dirStore) delete(_ context.Context, key string) error {
	path := s.path(key)
	if err := s.disk.Remove(path); err != nil {
		return err
	}
	return s.disk.SyncDir(filepath.Dir(path))
}

func (s *dirStore) list(ctx context.Context, prefix string, fn func(Object) error) error {
	// Walk only the directory the prefix is inside of.
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = s.path(prefix[:i])
	}
	var objs []Object
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == start {
				return filepath.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		objs = append(objs, Object{Key: key, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// sweepTemp removes temporary files last written before cutoff.
func (s *dirStore) sweepTemp(ctx context.Context, cutoff time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil // gone meanwhile, or a write in progress
		}
		if err := s.disk.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	return n, err
}

func (s *dirStore) ping(context.Context) error {
	fi, err := os.Stat(s.root)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", s.root)
	}
	return err
}

func (s *dirStore) close() error { return nil }

// isNoSpace tells a full disk (or quota) from other failures.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
