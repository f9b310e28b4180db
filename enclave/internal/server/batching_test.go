package server_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Concurrent digest Sign calls and a SignBatch, with and without the
// batching of concurrent signatures: every signature recovers to its key,
// and GetStats counts the signatures that went through batching. The
// configured pause runs between the signatures of each batch.
func TestSignBatching(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprint("NoBatching=", off), func(t *testing.T) {
			var pauses atomic.Int64
			s, _ := newServerWith(t, func(c *server.Config) {
				c.NoBatching = off
				c.Pause = func() { pauses.Add(1) }
			})
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
				assert.Zero(t, pauses.Load())
				return
			}
			assert.EqualValues(t, callers*each+20, st.GetBatchedSignatures())
			assert.NotZero(t, st.GetSignBatches())
			assert.LessOrEqual(t, st.GetSignBatches(), st.GetBatchedSignatures())
			// One pause between each two signatures of a batch.
			assert.EqualValues(t, st.GetBatchedSignatures()-st.GetSignBatches(), pauses.Load())
		})
	}
}

// Ethereum payloads and Bitcoin ECDSA sighashes sign through the combiner
// too, concurrently with each other; Schnorr and Solana signatures do not.
// Every signature is checked with go-ethereum or btcd.
func TestChainPayloadsBatching(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprint("NoBatching=", off), func(t *testing.T) {
			s, _ := newServerWith(t, func(c *server.Config) { c.NoBatching = off })
			k1 := createKey(t, s, k1Alg)
			ed := createKey(t, s, edAlg)
			from := ethAddress(t, k1.GetPublicKey())
			pub, err := btcec.ParsePubKey(k1.GetPublicKey())
			require.NoError(t, err)
			solMsg := solanaVector(t, ed.GetPublicKey())

			const callers = 12
			var wg sync.WaitGroup
			errs := make(chan error, 5*callers)
			for g := range callers {
				wg.Go(func() {
					errs <- func() error { // an EIP-1559 transaction
						f := proto.Clone(eip1559Fields).(*signerv1.EthTxFields)
						f.Nonce = fmt.Sprint(g)
						r, err := call(t, s, enclavev1.Method_METHOD_SIGN, chainReq(k1.GetKeyId(), fieldsTx(f)), &enclavev1.SignResponse{})
						if err != nil {
							return err
						}
						var tx types.Transaction
						if err := tx.UnmarshalBinary(r.GetResponse().GetSignedPayload()); err != nil {
							return err
						}
						sender, err := types.Sender(types.LatestSignerForChainID(big.NewInt(11155111)), &tx)
						if err == nil && sender.Hex() != from {
							err = fmt.Errorf("transaction %d: sender %s, want %s", g, sender.Hex(), from)
						}
						return err
					}()
					errs <- func() error { // a personal message
						msg := fmt.Appendf(nil, "message %d", g)
						r, err := call(t, s, enclavev1.Method_METHOD_SIGN, chainReq(k1.GetKeyId(), personal(msg)), &enclavev1.SignResponse{})
						if err != nil {
							return err
						}
						sig := bytes.Clone(r.GetResponse().GetSignature())
						if len(sig) != 65 || sig[64] < 27 {
							return fmt.Errorf("personal message %d: signature %x", g, sig)
						}
						sig[64] -= 27
						pk, err := crypto.SigToPub(accounts.TextHash(msg), sig)
						if err == nil && crypto.PubkeyToAddress(*pk).Hex() != from {
							err = fmt.Errorf("personal message %d: recovers to another address", g)
						}
						return err
					}()
					for _, scheme := range []signerv1.BitcoinSighash_Scheme{signerv1.BitcoinSighash_SCHEME_ECDSA, signerv1.BitcoinSighash_SCHEME_SCHNORR} {
						errs <- func() error { // a Bitcoin sighash
							hash := bytes.Repeat([]byte{byte(g)}, 32)
							r, err := call(t, s, enclavev1.Method_METHOD_SIGN, chainReq(k1.GetKeyId(), &signerv1.BitcoinSighash{
								Sighash: hash, Scheme: scheme, SighashType: 1}), &enclavev1.SignResponse{})
							if err != nil {
								return err
							}
							sig := r.GetResponse().GetSignature()
							if len(sig) < 2 || sig[len(sig)-1] != 1 {
								return fmt.Errorf("sighash %d: signature %x", g, sig)
							}
							ok := false
							if scheme == signerv1.BitcoinSighash_SCHEME_ECDSA {
								der, err := btcecdsa.ParseDERSignature(sig[:len(sig)-1])
								ok = err == nil && der.Verify(hash, pub)
							} else {
								sch, err := schnorr.ParseSignature(sig[:len(sig)-1])
								ok = err == nil && sch.Verify(hash, pub)
							}
							if !ok {
								return fmt.Errorf("%v sighash %d: signature does not verify", scheme, g)
							}
							return nil
						}()
					}
					errs <- func() error { // a Solana message: ed25519, not batched
						_, err := call(t, s, enclavev1.Method_METHOD_SIGN, chainReq(ed.GetKeyId(), solana(solMsg)), &enclavev1.SignResponse{})
						return err
					}()
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				assert.NoError(t, err)
			}

			st, err := call(t, s, enclavev1.Method_METHOD_GET_STATS, &enclavev1.GetStatsRequest{}, &enclavev1.GetStatsResponse{})
			require.NoError(t, err)
			want := uint64(3 * callers) // transactions, personal messages, ECDSA sighashes
			if off {
				want = 0
			}
			assert.Equal(t, want, st.GetBatchedSignatures())
		})
	}
}
