package backup

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/blobstore"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/subject"
)

// File content is backed up in its own region, beside the live objects:
// a content object never changes once written, so a backup copies to
// Prefix+key only the objects no kept backup holds yet, and lists (in its
// part files/<region>, "key size sha256" a line) every object its
// snapshot refers to. A copy goes when no kept backup lists it any more,
// or when an erasure shreds the content.

// Prefix is where a region's store keeps the backups' copies of content.
const Prefix = "backup/"

// Regions are the stores of file content, by region (blobstore.Regions).
type Regions interface {
	Names() []string
	Store(name string) (*blobstore.Store, error)
}

// RegionFiles is what a manifest says of one region's content.
type RegionFiles struct {
	Region      string `json:"region"`
	Location    string `json:"location"` // the region's store, without credentials; the copies are under Prefix
	Objects     int    `json:"objects"`
	Bytes       int64  `json:"bytes"`
	Copied      int    `json:"copied"` // objects this backup copied; the others a kept backup held already
	CopiedBytes int64  `json:"copied_bytes"`
	List        Part   `json:"list"` // files/<region>
}

// object is one line of a region's list.
type object struct {
	key    string
	size   int64
	sha256 string
}

// copyContent copies into each region's backup prefix the content blobs
// (region → keys, from the snapshot) that prev (the newest kept backup's
// lists, region → key → object) and the prefix do not hold already, and
// writes the lists into work/files.
func copyContent(ctx context.Context, regions Regions, work string, blobs map[string][]string, prev map[string]map[string]object) ([]RegionFiles, error) {
	var out []RegionFiles
	for _, region := range slices.Sorted(maps.Keys(blobs)) {
		if regions == nil {
			return nil, fmt.Errorf("files in region %s, and no region configured", region)
		}
		st, err := regions.Store(region)
		if err != nil {
			return nil, fmt.Errorf("files in region %s, which is not configured: %w", region, err)
		}
		held := map[string]int64{}
		if err := st.List(ctx, Prefix, func(o blobstore.Object) error {
			held[strings.TrimPrefix(o.Key, Prefix)] = o.Size
			return nil
		}); err != nil {
			return nil, err
		}
		rf := RegionFiles{Region: region, Location: st.Location}
		var list []object
		for _, key := range blobs[region] {
			o, ok := prev[region][key]
			if !ok || held[key] != o.size {
				if o, err = copyObject(ctx, st, key); err != nil {
					return nil, err
				}
				rf.Copied++
				rf.CopiedBytes += o.size
			}
			list = append(list, o)
			rf.Objects++
			rf.Bytes += o.size
		}
		if rf.List, err = writeList(filepath.Join(work, "files", region), list); err != nil {
			return nil, err
		}
		out = append(out, rf)
	}
	return out, nil
}

// copyObject copies key to Prefix+key in st, hashing it on the way.
func copyObject(ctx context.Context, st *blobstore.Store, key string) (object, error) {
	r, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return object{}, fmt.Errorf("back up content %s of region %s: %w", key, st.Region, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := st.Put(ctx, Prefix+key, io.TeeReader(r, h))
	if err != nil {
		return object{}, fmt.Errorf("back up content %s of region %s: %w", key, st.Region, err)
	}
	return object{key: key, size: n, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeList writes a region's list, durably, and answers the part.
func writeList(path string, list []object) (Part, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Part{}, err
	}
	var b strings.Builder
	for _, o := range list {
		fmt.Fprintf(&b, "%s %d %s\n", o.key, o.size, o.sha256)
	}
	info, err := writeShardBytes(path, []byte(b.String()))
	return Part{Name: filepath.Join("files", filepath.Base(path)), Bytes: info.Bytes, SHA256: info.SHA256}, err
}

// readList reads a region's list of the backup in at.
func readList(at string, rf RegionFiles) ([]object, error) {
	f, err := os.Open(filepath.Join(at, rf.List.Name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []object
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			return nil, fmt.Errorf("%s: a line is not \"key size sha256\"", rf.List.Name)
		}
		n, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rf.List.Name, err)
		}
		out = append(out, object{key: fs[0], size: n, sha256: fs[2]})
	}
	return out, sc.Err()
}

// lists reads every region's list of the backup m in dir, region → key →
// object.
func lists(dir string, m Manifest) (map[string]map[string]object, error) {
	out := map[string]map[string]object{}
	for _, rf := range m.Files {
		l, err := readList(filepath.Join(dir, m.ID), rf)
		if err != nil {
			return nil, err
		}
		byKey := make(map[string]object, len(l))
		for _, o := range l {
			byKey[o.key] = o
		}
		out[rf.Region] = byKey
	}
	return out, nil
}

// VerifyContent checks that every content copy the backup m of dir lists
// is in its region with its size; deep also reads each and checks its
// SHA-256. It names the first that differs.
func VerifyContent(ctx context.Context, regions Regions, dir string, m Manifest, deep bool) error {
	for _, rf := range m.Files {
		st, err := regions.Store(rf.Region)
		if err != nil {
			return fmt.Errorf("backup %s: its content of region %s cannot be checked: the region is not configured", m.ID, rf.Region)
		}
		list, err := readList(filepath.Join(dir, m.ID), rf)
		if err != nil {
			return err
		}
		held := map[string]int64{}
		if err := st.List(ctx, Prefix, func(o blobstore.Object) error {
			held[strings.TrimPrefix(o.Key, Prefix)] = o.Size
			return nil
		}); err != nil {
			return err
		}
		for _, o := range list {
			n, ok := held[o.key]
			if !ok {
				return fmt.Errorf("backup %s: content %s is missing from region %s (%s%s)", m.ID, o.key, rf.Region, Prefix, o.key)
			}
			if n != o.size {
				return fmt.Errorf("backup %s: content %s in region %s differs from its list (altered or damaged)", m.ID, o.key, rf.Region)
			}
			if deep {
				if err := checkSum(ctx, st, o); err != nil {
					return fmt.Errorf("backup %s: %w", m.ID, err)
				}
			}
		}
	}
	return nil
}

// checkSum reads the copy of o and compares its SHA-256.
func checkSum(ctx context.Context, st *blobstore.Store, o object) error {
	r, err := st.Get(ctx, Prefix+o.key, 0, -1)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != o.sha256 {
		return fmt.Errorf("content %s in region %s differs from its list (altered or damaged)", o.key, st.Region)
	}
	return nil
}

// collectContent deletes from every region's backup prefix the copies no
// backup of ms lists, and answers how many.
func collectContent(ctx context.Context, regions Regions, dir string, ms []Manifest) (int, error) {
	if regions == nil {
		return 0, nil
	}
	needed := map[string]map[string]bool{}
	for _, m := range ms {
		ls, err := lists(dir, m)
		if err != nil {
			return 0, err
		}
		for region, l := range ls {
			if needed[region] == nil {
				needed[region] = map[string]bool{}
			}
			for k := range l {
				needed[region][k] = true
			}
		}
	}
	gone := 0
	for _, region := range regions.Names() {
		st, err := regions.Store(region)
		if err != nil {
			continue
		}
		var drop []string
		if err := st.List(ctx, Prefix, func(o blobstore.Object) error {
			if k := strings.TrimPrefix(o.Key, Prefix); !needed[region][k] {
				drop = append(drop, o.Key)
			}
			return nil
		}); err != nil {
			return gone, err
		}
		for _, k := range drop {
			if err := st.Delete(ctx, k); err != nil {
				return gone, err
			}
			gone++
		}
	}
	return gone, nil
}

// RestoreContent copies every object the backup m lists back from its
// region's backup prefix (from, by region; the configured store when not
// named) to the live key in the region's configured store (to), skipping
// what is there already with its size; it tells progress of the bytes.
func RestoreContent(ctx context.Context, from, to Regions, dir string, m Manifest, progress Progress) error {
	var total, done int64
	for _, rf := range m.Files {
		total += rf.Bytes
	}
	for _, rf := range m.Files {
		src, err := from.Store(rf.Region)
		if err != nil {
			return fmt.Errorf("the backup's content of region %s: the region is not configured (name where its copies are, %s)", rf.Region, rf.Location)
		}
		dst, err := to.Store(rf.Region)
		if err != nil {
			return fmt.Errorf("region %s is not configured: name where to put its files with --region %s=URL", rf.Region, rf.Region)
		}
		list, err := readList(filepath.Join(dir, m.ID), rf)
		if err != nil {
			return err
		}
		for _, o := range list {
			if n, err := dst.Size(ctx, o.key); err == nil && n == o.size {
				done += o.size
				progress(done, total)
				continue
			} else if err != nil && !errs.Is(err, errs.NotFound) {
				return err
			}
			r, err := src.Get(ctx, Prefix+o.key, 0, -1)
			if err != nil {
				return fmt.Errorf("restore content %s of region %s: %w", o.key, rf.Region, err)
			}
			h := sha256.New()
			_, err = dst.Put(ctx, o.key, io.TeeReader(r, h))
			r.Close()
			if err != nil {
				return fmt.Errorf("restore content %s of region %s: %w", o.key, rf.Region, err)
			}
			if hex.EncodeToString(h.Sum(nil)) != o.sha256 {
				_ = dst.Delete(ctx, o.key)
				return fmt.Errorf("restore content %s of region %s: the copy differs from the backup's list (altered or damaged)", o.key, rf.Region)
			}
			done += o.size
			progress(done, total)
		}
	}
	return nil
}

// ForgetContent deletes the copies of blobs (content an erasure shredded)
// from their regions' backup prefix, and takes them out of the lists of
// every backup of dir that held them, signing its manifest again with key.
func ForgetContent(ctx context.Context, regions Regions, dir string, blobs []subject.Blob, key ed25519.PrivateKey, trusted ...ed25519.PublicKey) error {
	ms, err := List(dir, slices.Concat(trusted, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})...)
	if err != nil {
		return err
	}
	gone := map[subject.Blob]bool{}
	for _, b := range blobs {
		gone[b] = true
		if regions == nil {
			continue
		}
		if st, err := regions.Store(b.Region); err == nil {
			if err := st.Delete(ctx, Prefix+b.Key); err != nil {
				return err
			}
		}
	}
	for _, m := range ms {
		changed := false
		for i, rf := range m.Files {
			list, err := readList(filepath.Join(dir, m.ID), rf)
			if err != nil {
				return err
			}
			kept := slices.DeleteFunc(slices.Clone(list), func(o object) bool { return gone[subject.Blob{Region: rf.Region, Key: o.key}] })
			if len(kept) == len(list) {
				continue
			}
			if m.Files[i].List, err = writeList(filepath.Join(dir, m.ID, rf.List.Name), kept); err != nil {
				return err
			}
			m.Files[i].Objects = len(kept)
			m.Files[i].Bytes = 0
			for _, o := range kept {
				m.Files[i].Bytes += o.size
			}
			changed = true
		}
		if changed {
			m.Generation++
			if err := writeManifest(filepath.Join(dir, m.ID), m, key); err != nil {
				return err
			}
		}
	}
	return nil
}
