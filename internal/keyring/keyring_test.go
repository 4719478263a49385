package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/keyring"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMain(m *testing.M) { sqldbtest.Main(m) }

// newTenant stores a tenant row and its keys.
func newTenant(t testing.TB, db *sqldb.DB, kr *keyring.Keyring, id string) {
	t.Helper()
	ctx := context.Background()
	tk, err := kr.NewTenantKeys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	err = db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO tenants (id, slug, name, region, status, created_at) VALUES (?, ?, ?, 'local', 'active', 0)", id, id, id); err != nil {
			return err
		}
		return tk.Insert(ctx, tx)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newSubjectKey(t testing.TB, db *sqldb.DB, kr *keyring.Keyring, tenantID, subjectID string) *keyring.DataKey {
	t.Helper()
	ctx := context.Background()
	dk, wk, err := kr.NewSubjectKey(ctx, db.Read(), tenantID, subjectID)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return wk.Insert(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
	return dk
}

func newKeyring(t testing.TB) *keyring.Keyring {
	kr, _ := newKeyringMaster(t)
	return kr
}

func newKeyringMaster(t testing.TB) (*keyring.Keyring, keyring.MasterKey) {
	t.Helper()
	mk, created, err := keyring.OpenMaster(context.Background(), "", t.TempDir())
	if err != nil || !created {
		t.Fatalf("OpenMaster: created=%v err=%v", created, err)
	}
	return keyring.New(mk, time.Now), mk
}

func TestSealBindsCiphertextToItsPlace(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr := newKeyring(t)
		newTenant(t, db, kr, "t1")
		newTenant(t, db, kr, "t2")
		a := newSubjectKey(t, db, kr, "t1", "a")
		b := newSubjectKey(t, db, kr, "t1", "b")
		other := newSubjectKey(t, db, kr, "t2", "a")

		ct := a.Seal("subjects", "email_ct", "a", []byte("jane@example.com"))
		if bytes.Contains(ct, []byte("jane")) {
			t.Fatal("ciphertext contains the plaintext")
		}
		got, err := a.Open("subjects", "email_ct", "a", ct)
		if err != nil || string(got) != "jane@example.com" {
			t.Fatalf("Open = %q, %v", got, err)
		}
		// A fresh nonce each time: the same value never gives the same bytes.
		if again := a.Seal("subjects", "email_ct", "a", []byte("jane@example.com")); bytes.Equal(again, ct) {
			t.Error("two seals of one value are identical")
		}
		reloaded, err := kr.SubjectKey(ctx, db.Read(), "t1", "a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reloaded.Open("subjects", "email_ct", "a", ct); err != nil {
			t.Fatalf("reloaded key does not open: %v", err)
		}
		flipped := bytes.Clone(ct)
		flipped[len(flipped)-1] ^= 1
		versioned := bytes.Clone(ct)
		versioned[4] ^= 1 // key version in the header
		for name, open := range map[string]func() ([]byte, error){
			"other row":         func() ([]byte, error) { return a.Open("subjects", "email_ct", "b", ct) },
			"other column":      func() ([]byte, error) { return a.Open("subjects", "phone_ct", "a", ct) },
			"other table":       func() ([]byte, error) { return a.Open("users", "email_ct", "a", ct) },
			"other subject key": func() ([]byte, error) { return b.Open("subjects", "email_ct", "a", ct) },
			"other tenant":      func() ([]byte, error) { return other.Open("subjects", "email_ct", "a", ct) },
			"flipped bit":       func() ([]byte, error) { return a.Open("subjects", "email_ct", "a", flipped) },
			"altered version":   func() ([]byte, error) { return a.Open("subjects", "email_ct", "a", versioned) },
			"truncated":         func() ([]byte, error) { return a.Open("subjects", "email_ct", "a", ct[:10]) },
		} {
			if pt, err := open(); !errors.Is(err, keyring.ErrDecrypt) {
				t.Errorf("%s: Open = %q, %v; want ErrDecrypt", name, pt, err)
			}
		}
	})
}

func TestBlindIndex(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr := newKeyring(t)
		newTenant(t, db, kr, "t1")
		newTenant(t, db, kr, "t2")
		idx := func(tenant, field, v string) []byte {
			b, err := kr.BlindIndex(ctx, db.Read(), tenant, field, v)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		x := idx("t1", "email", "jane@example.com")
		if !bytes.Equal(x, idx("t1", "email", "jane@example.com")) {
			t.Error("blind index is not deterministic")
		}
		if bytes.Equal(x, idx("t2", "email", "jane@example.com")) {
			t.Error("two tenants share a blind index")
		}
		if bytes.Equal(x, idx("t1", "external_id", "jane@example.com")) {
			t.Error("fields are not domain-separated")
		}
		if bytes.Equal(x, idx("t1", "email", "john@example.com")) {
			t.Error("different values give one index")
		}
	})
}

func TestRotateRewrapsAndRetires(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr, mk := newKeyringMaster(t)
		newTenant(t, db, kr, "t1")
		var cts [][]byte
		for i := range 1200 { // more than one re-wrap batch
			id := "s" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
			dk := newSubjectKey(t, db, kr, "t1", id)
			if i%100 == 0 {
				cts = append(cts, []byte(id), dk.Seal("subjects", "email_ct", id, []byte("v-"+id)))
			}
		}
		res, err := kr.Rotate(ctx, db, "t1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != 2 || res.Rewrapped != 1200 || len(res.Retired) != 1 || res.Retired[0] != 1 {
			t.Fatalf("Rotate = %+v; want version 2, 1200 re-wrapped, v1 retired", res)
		}
		var n int
		if err := db.Read().QueryRow(ctx, "SELECT count(*) FROM tenant_keys WHERE tenant_id = 't1'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("tenant keys after rotation: %d, %v; want only the new one", n, err)
		}
		// A fresh keyring (nothing cached) opens old ciphertexts through the new KEK.
		fresh := keyring.New(mk, time.Now)
		for i := 0; i < len(cts); i += 2 {
			id := string(cts[i])
			dk, err := fresh.SubjectKey(ctx, db.Read(), "t1", id)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := dk.Open("subjects", "email_ct", id, cts[i+1]); err != nil || string(pt) != "v-"+id {
				t.Fatalf("after rotation %s opens to %q, %v", id, pt, err)
			}
		}
		// New keys are made under the new version, and a second rotation works.
		newSubjectKey(t, db, kr, "t1", "later")
		res, err = kr.Rotate(ctx, db, "t1", nil)
		if err != nil || res.Version != 3 || res.Rewrapped != 1201 {
			t.Fatalf("second Rotate = %+v, %v", res, err)
		}
	})
}

func TestDestroyedKeyIsGone(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr := newKeyring(t)
		newTenant(t, db, kr, "t1")
		newSubjectKey(t, db, kr, "t1", "a")
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return kr.DestroySubjectKey(ctx, tx, "t1", "a") }); err != nil {
			t.Fatal(err)
		}
		if _, err := kr.SubjectKey(ctx, db.Read(), "t1", "a"); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Fatalf("SubjectKey after destroy: %v; want ErrKeyDestroyed", err)
		}
	})
}

// A node's cached keys: used inside a request, gone when this node
// destroys one (even within the request that cached it), and gone at the
// next request when another node or process does.
func TestCachedKeysLeaveWithTheErasure(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr, mk := newKeyringMaster(t)
		kr.CacheSubjectKeys(db, 100)
		newTenant(t, db, kr, "t1")
		for _, id := range []string{"a", "b"} {
			newSubjectKey(t, db, kr, "t1", id)
		}
		req := db.WithEpochs(ctx)
		for _, id := range []string{"a", "b"} {
			if _, err := kr.SubjectKey(req, db.Read(), "t1", id); err != nil {
				t.Fatal(err)
			}
		}
		// This node erases a: not even the request that cached it gets it.
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return kr.DestroySubjectKey(ctx, tx, "t1", "a") }); err != nil {
			t.Fatal(err)
		}
		if _, err := kr.SubjectKey(req, db.Read(), "t1", "a"); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Fatalf("this node's cache after its own erasure: %v; want ErrKeyDestroyed", err)
		}
		// Another node (its own keyring) erases b: the next request here misses.
		other := keyring.New(mk, time.Now)
		if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return other.DestroySubjectKey(ctx, tx, "t1", "b") }); err != nil {
			t.Fatal(err)
		}
		if _, err := kr.SubjectKey(db.WithEpochs(ctx), db.Read(), "t1", "b"); !errors.Is(err, keyring.ErrKeyDestroyed) {
			t.Fatalf("this node's cache after another node's erasure: %v; want ErrKeyDestroyed", err)
		}
		// Inside a transaction the cache is passed by: a key the
		// transaction destroyed is gone for it, whatever the cache holds.
		newSubjectKey(t, db, kr, "t1", "c")
		req = db.WithEpochs(ctx)
		if _, err := kr.SubjectKey(req, db.Read(), "t1", "c"); err != nil {
			t.Fatal(err)
		}
		if err := db.WithTx(req, func(ctx context.Context, tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, "DELETE FROM subject_keys WHERE tenant_id = 't1' AND subject_id = 'c'"); err != nil {
				return err
			}
			if _, err := kr.SubjectKey(ctx, tx.Q, "t1", "c"); !errors.Is(err, keyring.ErrKeyDestroyed) {
				t.Errorf("in the transaction that destroyed it: %v; want ErrKeyDestroyed", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// The version of the tenant's active key is cached the same way: a
// rotation on another node is followed from the next request.
func TestNewKeysFollowARotationElsewhere(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr, mk := newKeyringMaster(t)
		kr.CacheSubjectKeys(db, 100)
		newTenant(t, db, kr, "t1")
		version := func(subjectID string) int {
			t.Helper()
			_, wk, err := kr.NewSubjectKey(db.WithEpochs(ctx), db.Read(), "t1", subjectID)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return wk.Insert(ctx, tx) }); err != nil {
				t.Fatal(err)
			}
			return sqldbtest.Int(t, db, "SELECT kek_version FROM subject_keys WHERE tenant_id = 't1' AND subject_id = ?", subjectID)
		}
		if v := version("a"); v != 1 {
			t.Fatalf("first key under version %d; want 1", v)
		}
		if _, err := keyring.New(mk, time.Now).Rotate(ctx, db, "t1", nil); err != nil {
			t.Fatal(err)
		}
		if v := version("b"); v != 2 {
			t.Fatalf("a key made after another node's rotation is under version %d; want 2", v)
		}
	})
}

func TestMasterKeyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, created, err := keyring.OpenMaster(ctx, "", dir)
	if err != nil || !created {
		t.Fatalf("first open: created=%v err=%v", created, err)
	}
	path := filepath.Join(dir, keyring.MasterKeyFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	ct, err := mk.Encrypt(ctx, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	mk2, created, err := keyring.OpenMaster(ctx, "file://"+path, "")
	if err != nil || created {
		t.Fatalf("reopen: created=%v err=%v", created, err)
	}
	if pt, err := mk2.Decrypt(ctx, ct); err != nil || string(pt) != "secret" {
		t.Fatalf("reopened key decrypts to %q, %v", pt, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keyring.OpenMaster(ctx, "", dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
	// A gocloud.dev/secrets keeper URL works the same way.
	kp, _, err := keyring.OpenMaster(ctx, "base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4=", "")
	if err != nil {
		t.Fatal(err)
	}
	ct, err = kp.Encrypt(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := kp.Decrypt(ctx, ct); err != nil || string(pt) != "x" {
		t.Fatalf("keeper round trip: %q, %v", pt, err)
	}
}

// TestRotateWhileKeysAreMade rotates while another goroutine keeps making
// subject keys: no key may be left under a deleted KEK version.
func TestRotateWhileKeysAreMade(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr, mk := newKeyringMaster(t)
		newTenant(t, db, kr, "t1")
		for i := range 300 {
			newSubjectKey(t, db, kr, "t1", fmt.Sprint("pre-", i))
		}
		stop := make(chan struct{})
		made := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					made <- n
					return
				default:
				}
				dk, wk, err := kr.NewSubjectKey(ctx, db.Read(), "t1", fmt.Sprint("live-", n))
				if err == nil {
					err = db.WithTx(ctx, func(ctx context.Context, tx *sqldb.Tx) error { return wk.Insert(ctx, tx) })
				}
				if err != nil && !sqldb.IsForeignKeyViolation(err) { // a key under a just-retired KEK is refused, never lost silently
					t.Error(err)
				}
				_ = dk
				n++
			}
		}()
		for range 3 {
			if _, err := kr.Rotate(ctx, db, "t1", nil); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		n := <-made
		var versions, stale int
		if err := db.Read().QueryRow(ctx, "SELECT count(*) FROM tenant_keys WHERE tenant_id = 't1'").Scan(&versions); err != nil {
			t.Fatal(err)
		}
		if err := db.Read().QueryRow(ctx, `SELECT count(*) FROM subject_keys s WHERE NOT EXISTS
			(SELECT 1 FROM tenant_keys k WHERE k.tenant_id = s.tenant_id AND k.version = s.kek_version)`).Scan(&stale); err != nil {
			t.Fatal(err)
		}
		if stale != 0 || versions != 1 {
			t.Fatalf("%d subject keys under a deleted KEK, %d KEK versions left; want 0 and 1", stale, versions)
		}
		// Every stored key opens with a keyring that has nothing cached.
		fresh := keyring.New(mk, time.Now)
		ids := sqldbtest.Strings(t, db, "SELECT subject_id FROM subject_keys WHERE tenant_id = 't1'")
		for _, id := range ids {
			if _, err := fresh.SubjectKey(ctx, db.Read(), "t1", id); err != nil {
				t.Fatalf("subject key %s: %v", id, err)
			}
		}
		if len(ids) < 300+n/2 {
			t.Fatalf("%d keys stored; %d made before and %d during the rotations", len(ids), 300, n)
		}
		t.Logf("%d keys made during 3 rotations, %d stored", n, len(ids)-300)
	})
}

// TestTenantDataKey: the tenant's data key is stable, differs per tenant
// and from every subject key.
func TestTenantDataKey(t *testing.T) {
	sqldbtest.Run(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr := newKeyring(t)
		newTenant(t, db, kr, "t1")
		newTenant(t, db, kr, "t2")
		k1, err := kr.TenantDataKey(ctx, db.Read(), "t1")
		if err != nil {
			t.Fatal(err)
		}
		ct := k1.Seal("spaces", "name_ct", "s1", []byte("Client: Jane Doe"))
		again, err := kr.TenantDataKey(ctx, db.Read(), "t1")
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := again.Open("spaces", "name_ct", "s1", ct); err != nil || string(pt) != "Client: Jane Doe" {
			t.Fatalf("Open = %q, %v", pt, err)
		}
		k2, err := kr.TenantDataKey(ctx, db.Read(), "t2")
		if err != nil {
			t.Fatal(err)
		}
		subject := newSubjectKey(t, db, kr, "t1", "s1")
		for name, k := range map[string]*keyring.DataKey{"other tenant": k2, "a subject key": subject} {
			if _, err := k.Open("spaces", "name_ct", "s1", ct); !errors.Is(err, keyring.ErrDecrypt) {
				t.Errorf("%s opened the tenant's data: %v", name, err)
			}
		}
		if _, err := kr.TenantDataKey(ctx, db.Read(), "nope"); err == nil {
			t.Error("a data key for a tenant that does not exist")
		}
	})
}
