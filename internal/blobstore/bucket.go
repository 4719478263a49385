package blobstore

import (
	"context"
	"errors"
	"io"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob" // s3:// regions
)

// bucketStore keeps a region in a bucket through gocloud.dev/blob. A
// write is committed by the service when the upload completes (S3's
// PutObject and CompleteMultipartUpload answer once the object is durable
// at the provider), so no fsync of ours applies.
type bucketStore struct{ bucket *blob.Bucket }

func openBucket(ctx context.Context, rawURL string) (*bucketStore, error) {
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	return &bucketStore{b}, nil
}

func (s *bucketStore) put(ctx context.Context, key string, r io.Reader) (int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, r)
	if err != nil {
		cancel() // aborts the write: nothing is committed
		_ = w.Close()
		return n, err
	}
	return n, w.Close()
}

func (s *bucketStore) get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return s.bucket.NewRangeReader(ctx, key, offset, length, nil)
}

func (s *bucketStore) size(ctx context.Context, key string) (int64, error) {
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return 0, err
	}
	return a.Size, nil
}

func (s *bucketStore) delete(ctx context.Context, key string) error { return s.bucket.Delete(ctx, key) }

func (s *bucketStore) list(ctx context.Context, prefix string, fn func(Object) error) error {
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if o.IsDir {
			continue
		}
		if err := fn(Object{Key: o.Key, Size: o.Size}); err != nil {
			return err
		}
	}
}

func (s *bucketStore) ping(ctx context.Context) error {
	ok, err := s.bucket.IsAccessible(ctx)
	if err == nil && !ok {
		err = errors.New("bucket not accessible")
	}
	return err
}

func (s *bucketStore) close() error { return s.bucket.Close() }
