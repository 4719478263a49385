package audit

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"
)

// FuzzForgedChain builds a signed chain, forges it as the fuzzer says —
// as someone who writes the database but holds no trusted key could — and
// checks it link by link and against its signed head, as Verify does.
// Every forgery that changes what the chain says fails; the untouched
// chain passes.
func FuzzForgedChain(f *testing.F) {
	f.Add(uint8(5), uint8(0), uint8(2), "subject.read", false, false)
	f.Add(uint8(5), uint8(1), uint8(3), "", true, true)
	f.Add(uint8(5), uint8(2), uint8(1), "", true, false)
	f.Add(uint8(5), uint8(3), uint8(0), "x", true, true)
	f.Add(uint8(5), uint8(4), uint8(4), "", false, true)
	f.Add(uint8(5), uint8(5), uint8(0), "", false, false)
	f.Add(uint8(1), uint8(6), uint8(0), "{\"a\":1}", true, true)
	f.Fuzz(func(t *testing.T, n, op, at uint8, value string, rehash, resign bool) {
		const tenant = "01tenant"
		trusted := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
		attacker := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
		n = n%8 + 1
		var recs []record
		prev := genesis(tenant)
		for i := range int(n) {
			r, err := newRecord(tenant, fmt.Sprintf("id-%d", i), time.Unix(1_800_000_000+int64(i), 0), Actor{Type: ActorToken, ID: "tok"},
				"req", Event{Action: "subject.create", TargetType: "subject", TargetID: fmt.Sprint(i)})
			if err != nil {
				t.Fatal(err)
			}
			r.Seq, r.PrevHash = int64(i+1), prev
			r.Hash = r.hash()
			prev = r.Hash
			recs = append(recs, r)
		}
		sign := func(key ed25519.PrivateKey, seq int64, hash []byte) signedHead {
			h := signedHead{seq: seq, at: 1_800_000_100, hash: hash}
			h.signature = ed25519.Sign(key, checkpointMessage(tenant, seq, hash, h.at))
			return h
		}
		head := sign(trusted, int64(n), prev)
		original := slices.Clone(recs)

		k := int(at) % len(recs)
		switch op % 7 {
		case 0: // alter a field
			recs[k].Action = value
		case 1:
			recs[k].TargetID = value
		case 2:
			recs[k].Details = value
		case 3: // delete one, renumbering the rest
			recs = slices.Delete(recs, k, k+1)
			for i := k; i < len(recs); i++ {
				recs[i].Seq--
			}
		case 4: // swap two
			if k+1 < len(recs) {
				recs[k], recs[k+1] = recs[k+1], recs[k]
				recs[k].Seq, recs[k+1].Seq = recs[k+1].Seq, recs[k].Seq
			}
		case 5: // cut the end off
			recs = recs[:k]
		case 6: // append one
			r := recs[len(recs)-1]
			r.Seq++
			r.ID, r.Action, r.PrevHash = "id-new", value, r.Hash
			r.Hash = r.hash()
			recs = append(recs, r)
		}
		last := int64(0)
		if rehash { // recompute every hash, as a writer of the database can
			p := genesis(tenant)
			for i := range recs {
				recs[i].PrevHash = p
				recs[i].Hash = recs[i].hash()
				p = recs[i].Hash
			}
		}
		if len(recs) > 0 {
			last = recs[len(recs)-1].Seq
		}
		if resign && len(recs) > 0 { // point the head at the forgery, signed with a key of one's own
			head = sign(attacker, last, recs[len(recs)-1].Hash)
		}

		ok := true
		p, seq := genesis(tenant), int64(0)
		for i := range recs {
			if recs[i].Seq != seq+1 || link(p, &recs[i]) != "" {
				ok = false
				break
			}
			p, seq = recs[i].Hash, recs[i].Seq
		}
		signedBy := func(msg, sig []byte) bool { return ed25519.Verify(trusted.Public().(ed25519.PublicKey), msg, sig) }
		if ok {
			if _, problem := head.covers(tenant, seq, p, signedBy); problem != "" {
				ok = false
			}
		}
		changed := !slices.EqualFunc(recs, original, func(a, b record) bool { return bytes.Equal(a.hash(), b.hash()) && a.Seq == b.Seq })
		if changed && ok {
			t.Fatalf("a forged chain (op %d at %d, rehash %v, resign %v) verified", op%7, k, rehash, resign)
		}
		if !changed && !ok && !resign {
			t.Fatalf("the untouched chain failed")
		}
	})
}
