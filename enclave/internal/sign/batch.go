package sign

import (
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// DigestJob is one signature of a batch given to a [BatchSigner]: the
// private key encoding and the digest in, the signature or the error out.
type DigestJob struct {
	Priv, Digest []byte
	Sig          []byte
	Err          error
}

// BatchSigner is implemented by schemes that sign several digests for less
// CPU than signing each on its own. SignDigests fills in every job's Sig or
// Err; each job's result is exactly what SignDigest gives for it.
//
// pause, if not nil, is called between the jobs' expensive steps (for
// secp256k1, between their nonce points), so that a signer that shares its
// CPUs with other processes can give them a turn during a long batch.
type BatchSigner interface {
	SignDigests(jobs []DigestJob, pause func())
}

// MaxDigestBatch is the most jobs Secp256k1.SignDigests works on at once;
// it takes longer slices in pieces. Past a few jobs the saving per job
// hardly grows (see SignDigests).
const MaxDigestBatch = 32

// SignDigests implements [BatchSigner]. A secp256k1 ECDSA signature spends
// about a quarter of its time in two inversions: the nonce point's Z
// coordinate (to make it affine, a field inversion) and the nonce itself
// (modulo the group order). Montgomery's trick replaces n inversions with
// one inversion and 3(n-1) multiplications, so a batch pays for those
// inversions once. Everything else is the same steps as SignDigest, with
// the same RFC 6979 nonces, so the signatures are the same bytes.
//
// pause is called between two valid jobs' nonce points (RFC 6979 and k·G,
// about three quarters of a signature's work), and between pieces of
// MaxDigestBatch jobs; never before the first or after the last.
func (s Secp256k1) SignDigests(jobs []DigestJob, pause func()) {
	for len(jobs) > 0 {
		n := min(len(jobs), MaxDigestBatch)
		if n == 1 {
			jobs[0].Sig, jobs[0].Err = s.SignDigest(jobs[0].Priv, jobs[0].Digest)
		} else {
			signDigestBatch(jobs[:n], pause)
		}
		jobs = jobs[n:]
		if len(jobs) > 0 && pause != nil {
			pause()
		}
	}
}

// batchItem is one job's working state in signDigestBatch.
type batchItem struct {
	job  *DigestJob
	d, k secp256k1.ModNScalar
	kG   secp256k1.JacobianPoint
	acc  secp256k1.FieldVal   // product of the Z coordinates up to here
	kAcc secp256k1.ModNScalar // product of the nonces up to here
}

func (b *batchItem) zero() {
	b.d.Zero()
	b.k.Zero()
	b.kAcc.Zero()
	b.kG = secp256k1.JacobianPoint{}
	b.acc.Zero()
	b.job = nil
}

// signDigestBatch signs 2..MaxDigestBatch jobs, calling pause (if not nil)
// between the nonce points.
func signDigestBatch(jobs []DigestJob, pause func()) {
	var store [MaxDigestBatch]batchItem
	items := store[:0]
	defer func() {
		for i := range items {
			items[i].zero()
		}
	}()

	// Step 1 and 2 of ECDSA for each valid job: the RFC 6979 nonce k
	// (first iteration) and k·G, still in Jacobian coordinates.
	for i := range jobs {
		j := &jobs[i]
		j.Sig, j.Err = nil, nil
		if j.Err = checkDigest(j.Digest); j.Err != nil {
			continue
		}
		it := &store[len(items)]
		if j.Err = secpScalar(j.Priv, &it.d); j.Err != nil {
			continue
		}
		if len(items) > 0 && pause != nil {
			pause()
		}
		items = items[:len(items)+1]
		it.job = j
		k := secp256k1.NonceRFC6979(j.Priv, j.Digest, nil, nil, 0)
		it.k.Set(k)
		k.Zero()
		secp256k1.ScalarBaseMultNonConst(&it.k, &it.kG)
	}
	n := len(items)
	if n == 0 {
		return
	}

	// Running products of the Z coordinates and of the nonces; neither can
	// be zero (k is in [1, N-1], so k·G is not the point at infinity).
	items[0].acc.Set(&items[0].kG.Z)
	items[0].kAcc.Set(&items[0].k)
	for i := 1; i < n; i++ {
		items[i].acc.Mul2(&items[i-1].acc, &items[i].kG.Z)
		items[i].kAcc.Mul2(&items[i-1].kAcc, &items[i].k)
	}
	var zInvAll, z2, zInvOne, t secp256k1.FieldVal
	var kInvAll, kInvOne secp256k1.ModNScalar
	defer func() {
		zInvAll.Zero()
		z2.Zero()
		zInvOne.Zero()
		t.Zero()
		kInvAll.Zero()
		kInvOne.Zero()
	}()
	zInvAll.Set(&items[n-1].acc).Inverse()
	kInvAll.InverseValNonConst(&items[n-1].kAcc)

	// Walk back: the inverse of the product up to i times the product up
	// to i-1 is the inverse of item i's own value.
	for i := n - 1; i >= 0; i-- {
		it := &items[i]
		if i > 0 {
			zInvOne.Mul2(&zInvAll, &items[i-1].acc) // Z_i^-1
			kInvOne.Mul2(&kInvAll, &items[i-1].kAcc)
			zInvAll.Mul(&it.kG.Z)
			kInvAll.Mul(&it.k)
		} else {
			zInvOne.Set(&zInvAll)
			kInvOne.Set(&kInvAll)
		}
		// Affine: X/Z², Y/Z³.
		z2.SquareVal(&zInvOne)
		it.kG.X.Mul(&z2).Normalize()
		t.Mul2(&z2, &zInvOne)
		it.kG.Y.Mul(&t).Normalize()
		finishSignature(it, &kInvOne)
	}
}

// finishSignature does ECDSA steps 3 to 6 for one batch item whose nonce
// point is affine, given the nonce's inverse. In the cases where RFC 6979
// moves on to its next nonce (r or s zero, about 2^-256 each), the job is
// signed again on its own, which takes that path.
func finishSignature(it *batchItem, kInv *secp256k1.ModNScalar) {
	j := it.job
	var xb [32]byte
	defer clear(xb[:])
	it.kG.X.PutBytes(&xb)
	var r, e, s secp256k1.ModNScalar
	defer s.Zero()
	overflow := r.SetBytes(&xb)
	if r.IsZero() {
		j.Sig, j.Err = Secp256k1{}.SignDigest(j.Priv, j.Digest)
		return
	}
	recovery := byte(overflow<<1) | byte(it.kG.Y.IsOddBit())
	e.SetByteSlice(j.Digest)
	s.Mul2(&it.d, &r).Add(&e).Mul(kInv)
	if s.IsZero() {
		j.Sig, j.Err = Secp256k1{}.SignDigest(j.Priv, j.Digest)
		return
	}
	if s.IsOverHalfOrder() {
		s.Negate()
		recovery ^= 1
	}
	sig := make([]byte, 65)
	r.PutBytesUnchecked(sig[:32])
	s.PutBytesUnchecked(sig[32:64])
	sig[64] = recovery
	j.Sig = sig
}
