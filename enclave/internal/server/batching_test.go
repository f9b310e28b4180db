package server_test

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Concurrent digest Sign calls and a SignBatch, with and without the
// batching of concurrent signatures: every signature recovers to its key,
// and GetStats counts the signatures that went through batching.
func TestSignBatching(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprint("NoBatching=", off), func(t *testing.T) {
			s, _ := newServerWith(t, func(c *server.Config) { c.NoBatching = off })
			keys := []*signerv1.Key{
				createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1),
				createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1),
			}
			ed := createKey(t, s, signerv1.Algorithm_ALGORITHM_ED25519)
			check := func(k *signerv1.Key, digest, sig []byte) error {
				if len(sig) != 65 {
					return fmt.Errorf("signature is %d bytes", len(sig))
				}
				pub, _, err := ecdsa.RecoverCompact(append([]byte{27 + sig[64]}, sig[:64]...), digest)
				if err != nil {
					return err
				}
				if string(pub.SerializeUncompressed()) != string(k.GetPublicKey()) {
					return fmt.Errorf("signature of %s recovers to another key", k.GetKeyId())
				}
				return nil
			}

			const callers, each = 16, 4
			var wg sync.WaitGroup
			errs := make(chan error, callers*each)
			for g := range callers {
				wg.Go(func() {
					for n := range each {
						k := keys[(g+n)%len(keys)]
						d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, n))
						r, err := call(t, s, enclavev1.Method_METHOD_SIGN, signReq(k.GetKeyId(), d[:], nil), &enclavev1.SignResponse{})
						if err == nil {
							err = check(k, d[:], r.GetResponse().GetSignature())
						}
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			// A SignBatch mixing both keys, an ed25519 message and a bad item.
			var reqs []*signerv1.SignRequest
			var digests [][]byte
			for i := range 20 {
				d := sha256.Sum256(fmt.Appendf(nil, "batch %d", i))
				digests = append(digests, d[:])
				reqs = append(reqs, signReq(keys[i%2].GetKeyId(), d[:], nil).GetRequest())
			}
			reqs = append(reqs, signReq(ed.GetKeyId(), nil, []byte("m")).GetRequest(), signReq(keys[0].GetKeyId(), []byte("short"), nil).GetRequest())
			br, err := call(t, s, enclavev1.Method_METHOD_SIGN_BATCH,
				&enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{Requests: reqs}}, &enclavev1.SignBatchResponse{})
			require.NoError(t, err)
			res := br.GetResponse().GetResults()
			require.Len(t, res, 22)
			for i, d := range digests {
				require.NoError(t, check(keys[i%2], d, res[i].GetResponse().GetSignature()), "item %d", i)
			}
			assert.NotEmpty(t, res[20].GetResponse().GetSignature())
			assert.Contains(t, res[21].GetError().GetMessage(), "digest")

			st, err := call(t, s, enclavev1.Method_METHOD_GET_STATS, &enclavev1.GetStatsRequest{}, &enclavev1.GetStatsResponse{})
			require.NoError(t, err)
			if off {
				assert.Zero(t, st.GetBatchedSignatures())
				assert.Zero(t, st.GetSignBatches())
				return
			}
			assert.EqualValues(t, callers*each+20, st.GetBatchedSignatures())
			assert.NotZero(t, st.GetSignBatches())
			assert.LessOrEqual(t, st.GetSignBatches(), st.GetBatchedSignatures())
		})
	}
}
