// Package blobstore keeps objects — encrypted file content — in the
// regions the operator declares: a local directory (file://…, the
// embedded default under the data dir) or an S3-compatible bucket
// (s3://bucket?region=…&endpoint=…) through gocloud.dev/blob.
//
// What it stores is opaque: callers encrypt before writing. A write is
// whole or absent: an upload that fails or is cancelled midway leaves no
// object behind, and a write that succeeded is durable (a local region
// fsyncs the file and its directories before answering). A region that
// cannot be reached answers 503; a full one answers 507.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"gocloud.dev/gcerrors"

	"github.com/custodia/custodia/internal/errs"
)

// Store is one region's blob store.
type Store struct {
	Region   string
	Location string // where the region is, for reports: scheme, bucket or path, endpoint; never credentials
	b        backend
}

// backend is where a region's objects live: a local directory (dirStore)
// or a bucket through gocloud (bucketStore).
type backend interface {
	put(ctx context.Context, key string, r io.Reader) (int64, error) // whole or absent
	get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	size(ctx context.Context, key string) (int64, error)
	delete(ctx context.Context, key string) error // fs.ErrNotExist or gcerrors.NotFound when missing
	list(ctx context.Context, prefix string, fn func(Object) error) error
	ping(ctx context.Context) error
	close() error
}

// Open opens the store of region name at rawURL. A file:// region is a
// local directory, created (0700) when missing, written durably and keeping
// its temporary files inside itself, so that nothing of a region's content
// is ever written outside it.
func Open(ctx context.Context, name, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", name, err)
	}
	var b backend
	if u.Scheme == "file" {
		b, err = openDir(u.Path, osDisk{})
	} else {
		b, err = openBucket(ctx, u.String())
	}
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", name, err)
	}
	return &Store{Region: name, Location: location(u), b: b}, nil
}

// location describes u without credentials or driver options.
func location(u *url.URL) string {
	if u.Scheme == "file" {
		return "file://" + u.Path
	}
	loc := u.Scheme + "://" + u.Host + u.Path
	q := u.Query()
	var parts []string
	for _, k := range []string{"region", "endpoint"} {
		if v := q.Get(k); v != "" {
			if e, err := url.Parse(v); err == nil && k == "endpoint" {
				v = e.Scheme + "://" + e.Host
			}
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) > 0 {
		loc += " (" + strings.Join(parts, ", ") + ")"
	}
	return loc
}

// Regions are the operator's regions, each opened once.
type Regions struct {
	names  []string
	stores map[string]*Store
}

// OpenRegions opens every region, given as name and URL, in order.
func OpenRegions(ctx context.Context, names, urls []string) (*Regions, error) {
	rs := &Regions{stores: map[string]*Store{}}
	for i, name := range names {
		s, err := Open(ctx, name, urls[i])
		if err != nil {
			rs.Close()
			return nil, err
		}
		rs.names = append(rs.names, name)
		rs.stores[name] = s
	}
	return rs, nil
}

// Names lists the regions in the operator's order.
func (rs *Regions) Names() []string { return rs.names }

// Store is region name's store; an unknown region is an Invalid error
// naming the field "region".
func (rs *Regions) Store(name string) (*Store, error) {
	s, ok := rs.stores[name]
	if !ok {
		return nil, errs.Field("region", "unknown region (configured: %s)", strings.Join(rs.names, ", "))
	}
	return s, nil
}

// Close closes every store.
func (rs *Regions) Close() error {
	var err error
	for _, s := range rs.stores {
		err = errors.Join(err, s.Close())
	}
	return err
}

// Close closes the store.
func (s *Store) Close() error { return s.b.close() }

// CheckKey refuses keys that are not plain relative paths: empty, too
// long, absolute, with "." or ".." segments, backslashes, control
// characters or invalid UTF-8. Keys are made by Custodia, never taken
// from users; this guards against a mistake becoming a traversal.
func CheckKey(key string) error {
	switch {
	case key == "" || len(key) > 512 || !utf8.ValidString(key):
		return fmt.Errorf("blobstore: bad key %q", key)
	case strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, `\`):
		return fmt.Errorf("blobstore: bad key %q", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("blobstore: bad key %q", key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, tmpPrefix) {
			return fmt.Errorf("blobstore: bad key %q", key)
		}
	}
	return nil
}

// wrap turns a backend error into the project's kinds.
func (s *Store) wrap(err error, key string) error {
	if err == nil {
		return nil
	}
	unavailable := func() error {
		return &errs.Error{Kind: errs.Unavailable, Detail: "the storage region " + s.Region + " is not available; try again later",
			Err: fmt.Errorf("region %s, object %s: %w", s.Region, key, err)}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) || gcerrors.Code(err) == gcerrors.NotFound:
		return errs.E(errs.NotFound, "no such object")
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case isNoSpace(err):
		return &errs.Error{Kind: errs.NoSpace, Detail: "the storage region " + s.Region + " is full; nothing was stored",
			Err: fmt.Errorf("region %s, object %s: %w", s.Region, key, err)}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return unavailable()
	}
	switch gcerrors.Code(err) {
	case gcerrors.Canceled, gcerrors.DeadlineExceeded:
		return err
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.ResourceExhausted, gcerrors.PermissionDenied, gcerrors.Unimplemented:
		return unavailable()
	}
	return fmt.Errorf("region %s, object %s: %w", s.Region, key, err)
}

// Put writes r to key, replacing any object there, and answers the bytes
// written once they are durable. If r or the store fails, or ctx ends, no
// object is left (and a replaced one stays as it was).
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	src := &sourceReader{r: r}
	n, err := s.b.put(ctx, key, src)
	if err != nil && src.err != nil {
		return n, src.err // the caller's reader failed: its error, as it is
	}
	return n, s.wrap(err, key)
}

// sourceReader remembers the error of the reader a Put copies from, to
// tell the caller's failures from the store's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (sr *sourceReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	if err != nil && err != io.EOF {
		sr.err = err
	}
	return n, err
}

// Get opens key for reading from offset, length bytes (-1: to the end).
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	r, err := s.b.get(ctx, key, offset, length)
	if err != nil {
		return nil, s.wrap(err, key)
	}
	return r, nil
}

// Size answers the size of key.
func (s *Store) Size(ctx context.Context, key string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	n, err := s.b.size(ctx, key)
	return n, s.wrap(err, key)
}

// Delete deletes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	err := s.b.delete(ctx, key)
	if errors.Is(err, fs.ErrNotExist) || gcerrors.Code(err) == gcerrors.NotFound {
		return nil
	}
	return s.wrap(err, key)
}

// Object is one listed object.
type Object struct {
	Key  string
	Size int64
}

// List calls fn for every object whose key starts with prefix, in key
// order, until fn returns an error.
func (s *Store) List(ctx context.Context, prefix string, fn func(Object) error) error {
	var fnErr error
	err := s.b.list(ctx, prefix, func(o Object) error {
		fnErr = fn(o)
		return fnErr
	})
	if err != nil && fnErr != nil {
		return fnErr
	}
	return s.wrap(err, prefix)
}

// SweepTemp deletes the temporary files of local writes that a crash
// interrupted, once older than age (a write in progress is younger), and
// answers how many. A bucket has none: an unfinished upload is never an
// object.
func (s *Store) SweepTemp(ctx context.Context, age time.Duration) (int, error) {
	d, ok := s.b.(*dirStore)
	if !ok {
		return 0, nil
	}
	n, err := d.sweepTemp(ctx, time.Now().Add(-age))
	return n, s.wrap(err, tmpPrefix+"*")
}

// Ping checks that the region can be reached.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.b.ping(ctx); err != nil {
		return &errs.Error{Kind: errs.Unavailable, Detail: "the storage region " + s.Region + " is not available; try again later",
			Err: fmt.Errorf("region %s: %w", s.Region, err)}
	}
	return nil
}
