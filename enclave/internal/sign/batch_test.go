package sign_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func secp256k1Scheme(t testing.TB) sign.Scheme {
	t.Helper()
	s, ok := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	require.True(t, ok)
	_, ok = s.(sign.BatchSigner)
	require.True(t, ok, "secp256k1 implements BatchSigner")
	return s
}

// The published vectors, signed together in one batch, give the published
// signatures.
func TestSignDigestsVectors(t *testing.T) {
	s := secp256k1Scheme(t)
	vecs := secp256k1Vectors(t)
	jobs := make([]sign.DigestJob, len(vecs))
	for i, v := range vecs {
		jobs[i] = sign.DigestJob{Priv: unhex(t, v.key), Digest: unhex(t, v.digest)}
	}
	s.(sign.BatchSigner).SignDigests(jobs, nil)
	for i, v := range vecs {
		require.NoError(t, jobs[i].Err, v.name)
		sig := jobs[i].Sig
		require.Len(t, sig, 65, v.name)
		assert.Equal(t, strings.TrimPrefix(v.r, "0x"), hex.EncodeToString(sig[:32]), v.name)
		assert.Equal(t, strings.TrimPrefix(v.sHex, "0x"), hex.EncodeToString(sig[32:64]), v.name)
		assert.Equal(t, v.v, sig[64], v.name)
	}
}

// Every batch size, across the MaxDigestBatch boundary, gives for every job
// exactly what SignDigest gives for it alone, with bad jobs in the middle
// failing on their own, and pauses between the valid jobs' nonce points.
func TestSignDigestsMatchesSignDigest(t *testing.T) {
	s := secp256k1Scheme(t)
	bs := s.(sign.BatchSigner)
	keys := make([][]byte, 8)
	for i := range keys {
		priv, _, err := s.Generate()
		require.NoError(t, err)
		keys[i] = priv
	}
	order := secp256k1.Params().N.Bytes()
	for _, n := range []int{1, 2, 3, 7, 16, sign.MaxDigestBatch - 1, sign.MaxDigestBatch, sign.MaxDigestBatch + 1, 2*sign.MaxDigestBatch + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			jobs := make([]sign.DigestJob, n)
			bad := map[int]error{}
			for i := range jobs {
				d := make([]byte, 32)
				_, _ = rand.Read(d)
				jobs[i] = sign.DigestJob{Priv: keys[i%len(keys)], Digest: d}
				if n > 3 {
					switch i % 11 {
					case 3:
						jobs[i].Digest = d[:31]
						bad[i] = sign.ErrInvalidPayload
					case 5:
						jobs[i].Priv = make([]byte, 32) // zero scalar
						bad[i] = sign.ErrInvalidKey
					case 7:
						jobs[i].Priv = order // the group order: out of range
						bad[i] = sign.ErrInvalidKey
					case 9:
						jobs[i].Priv = keys[0][:31]
						bad[i] = sign.ErrInvalidKey
					}
				}
				// Results from an earlier use of the slice are replaced.
				jobs[i].Sig, jobs[i].Err = []byte("stale"), fmt.Errorf("stale")
			}
			pauses := 0
			bs.SignDigests(jobs, func() { pauses++ })
			// A pause between two valid jobs of a piece and between pieces.
			wantPauses := 0
			for off := 0; off < n; off += sign.MaxDigestBatch {
				if off > 0 {
					wantPauses++
				}
				valid := 0
				for i := off; i < min(off+sign.MaxDigestBatch, n); i++ {
					if _, ok := bad[i]; !ok {
						valid++
					}
				}
				wantPauses += max(valid-1, 0)
			}
			assert.Equal(t, wantPauses, pauses, "pauses")
			for i, j := range jobs {
				if want, ok := bad[i]; ok {
					require.ErrorIs(t, j.Err, want, "job %d", i)
					assert.Nil(t, j.Sig, "job %d", i)
					continue
				}
				require.NoError(t, j.Err, "job %d", i)
				want, err := s.SignDigest(j.Priv, j.Digest)
				require.NoError(t, err)
				require.Equal(t, want, j.Sig, "job %d", i)
			}
		})
	}
}

// The same key and digest twice in one batch sign the same.
func TestSignDigestsRepeatedJob(t *testing.T) {
	s := secp256k1Scheme(t)
	priv, _, err := s.Generate()
	require.NoError(t, err)
	d := make([]byte, 32)
	jobs := []sign.DigestJob{{Priv: priv, Digest: d}, {Priv: priv, Digest: d}, {Priv: priv, Digest: d}}
	s.(sign.BatchSigner).SignDigests(jobs, nil)
	want, err := s.SignDigest(priv, d)
	require.NoError(t, err)
	for _, j := range jobs {
		require.NoError(t, j.Err)
		assert.Equal(t, want, j.Sig)
	}
}

// BenchmarkSignDigestsSecp256k1 reports the CPU per signature of batched
// signing, to set against BenchmarkSignDigestSecp256k1.
func BenchmarkSignDigestsSecp256k1(b *testing.B) {
	s := secp256k1Scheme(b)
	priv, _, _ := s.Generate()
	for _, n := range []int{1, 2, 4, 8, 16, 32} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			jobs := make([]sign.DigestJob, n)
			for i := range jobs {
				jobs[i] = sign.DigestJob{Priv: priv, Digest: []byte(fmt.Sprintf("%032d", i))}
			}
			var before, after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ReportAllocs()
			for b.Loop() {
				s.(sign.BatchSigner).SignDigests(jobs, nil)
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N*n), "cpu-ns/sig")
		})
	}
}
