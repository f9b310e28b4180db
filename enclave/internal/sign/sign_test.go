package sign_test

import (
	stdecdsa "crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	require.NoError(t, err)
	return b
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func TestRegistry(t *testing.T) {
	for _, alg := range []signerv1.Algorithm{signerv1.Algorithm_ALGORITHM_SECP256K1, signerv1.Algorithm_ALGORITHM_ED25519} {
		s, ok := sign.Lookup(alg)
		require.True(t, ok, alg)
		assert.Equal(t, alg, s.Algorithm())
		byName, ok := sign.ByName(s.Name())
		require.True(t, ok)
		assert.Equal(t, s, byName)
	}
	_, ok := sign.Lookup(signerv1.Algorithm_ALGORITHM_UNSPECIFIED)
	assert.False(t, ok)
	_, ok = sign.ByName("rsa")
	assert.False(t, ok)
}

func TestEd25519RFC8032(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name      string `json:"name"`
			SecretKey string `json:"secret_key"`
			PublicKey string `json:"public_key"`
			Message   string `json:"message"`
			Signature string `json:"signature"`
		} `json:"vectors"`
	}
	readJSON(t, "ed25519_rfc8032.json", &f)
	require.Len(t, f.Vectors, 5)
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_ED25519)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			priv := ed25519.NewKeyFromSeed(unhex(t, v.SecretKey))
			pub, err := s.PublicKey(priv)
			require.NoError(t, err)
			assert.Equal(t, v.PublicKey, hex.EncodeToString(pub))
			sig, err := s.SignMessage(priv, unhex(t, v.Message))
			require.NoError(t, err)
			assert.Equal(t, v.Signature, hex.EncodeToString(sig))
		})
	}
}

// recid extracts the recovery id from an Ethereum v value.
func recid(v int, chainID int) byte {
	switch {
	case v >= 35:
		return byte(v - 35 - 2*chainID)
	case v >= 27:
		return byte(v - 27)
	default:
		return byte(v)
	}
}

// secpVector is a published secp256k1 signature: key, digest and the
// expected r, s and recovery id.
type secpVector struct {
	name, key, digest, r, sHex string
	v                          byte
}

// secp256k1Vectors reads the standard vectors from testdata (EIP-155,
// EIP-712, EIP-191).
func secp256k1Vectors(t *testing.T) []secpVector {
	t.Helper()
	type vec = secpVector
	var vecs []vec

	var e155 struct {
		PrivateKey  string `json:"private_key"`
		SigningHash string `json:"signing_hash"`
		V           int    `json:"v"`
		R, S        string
		Tx          struct {
			ChainID int `json:"chainId"`
		} `json:"tx"`
	}
	readJSON(t, "eip155_example.json", &e155)
	vecs = append(vecs, vec{"eip155", e155.PrivateKey, e155.SigningHash, e155.R, e155.S, recid(e155.V, e155.Tx.ChainID)})

	var e712 struct {
		PrivateKey string `json:"private_key"`
		Digest     string
		V          int
		R, S       string
	}
	readJSON(t, "eip712_mail_example.json", &e712)
	vecs = append(vecs, vec{"eip712-mail", e712.PrivateKey, e712.Digest, e712.R, e712.S, recid(e712.V, 0)})

	var e191 struct {
		Vectors []struct {
			Name        string
			PrivateKey  string `json:"private_key"`
			MessageHash string `json:"message_hash"`
			Signature   string // r || s || v, v = 27 + recovery id
		}
	}
	readJSON(t, "eip191_personal_sign.json", &e191)
	for _, v := range e191.Vectors {
		sig := unhex(t, v.Signature)
		require.Len(t, sig, 65)
		vecs = append(vecs, vec{"eip191-" + v.Name, v.PrivateKey, v.MessageHash,
			hex.EncodeToString(sig[:32]), hex.EncodeToString(sig[32:64]), recid(int(sig[64]), 0)})
	}
	require.Len(t, vecs, 6)
	return vecs
}

func TestSecp256k1Vectors(t *testing.T) {
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	for _, v := range secp256k1Vectors(t) {
		t.Run(v.name, func(t *testing.T) {
			priv := unhex(t, v.key)
			digest := unhex(t, v.digest)
			sig, err := s.SignDigest(priv, digest)
			require.NoError(t, err)
			require.Len(t, sig, 65)
			assert.Equal(t, strings.TrimPrefix(v.r, "0x"), hex.EncodeToString(sig[:32]))
			assert.Equal(t, strings.TrimPrefix(v.sHex, "0x"), hex.EncodeToString(sig[32:64]))
			assert.Equal(t, v.v, sig[64])

			// Low-S and recovery to the key's public key.
			var sc secp256k1.ModNScalar
			sc.SetByteSlice(sig[32:64])
			assert.False(t, sc.IsOverHalfOrder())
			compact := append([]byte{27 + sig[64]}, sig[:64]...)
			rec, _, err := ecdsa.RecoverCompact(compact, digest)
			require.NoError(t, err)
			pub, err := s.PublicKey(priv)
			require.NoError(t, err)
			assert.Equal(t, pub, rec.SerializeUncompressed())
		})
	}
}

func TestGenerateSignVerify(t *testing.T) {
	tests := []struct {
		alg     signerv1.Algorithm
		privLen int
		pubLen  int
	}{
		{signerv1.Algorithm_ALGORITHM_SECP256K1, 32, 65},
		{signerv1.Algorithm_ALGORITHM_ED25519, 64, 32},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			s, _ := sign.Lookup(tt.alg)
			priv, pub, err := s.Generate()
			require.NoError(t, err)
			assert.Len(t, priv, tt.privLen)
			assert.Equal(t, tt.privLen, s.PrivateKeySize())
			assert.Len(t, pub, tt.pubLen)
			derived, err := s.PublicKey(priv)
			require.NoError(t, err)
			assert.Equal(t, pub, derived)
			if tt.alg == signerv1.Algorithm_ALGORITHM_ED25519 {
				sig, err := s.SignMessage(priv, []byte("hello"))
				require.NoError(t, err)
				assert.True(t, ed25519.Verify(pub, []byte("hello"), sig))
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	k1, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_ED25519)
	kPriv, _, err := k1.Generate()
	require.NoError(t, err)
	ePriv, _, err := ed.Generate()
	require.NoError(t, err)
	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"short digest", func() error { _, err := k1.SignDigest(kPriv, make([]byte, 31)); return err }, sign.ErrInvalidPayload},
		{"long digest", func() error { _, err := k1.SignDigest(kPriv, make([]byte, 33)); return err }, sign.ErrInvalidPayload},
		{"secp message", func() error { _, err := k1.SignMessage(kPriv, []byte("x")); return err }, sign.ErrUnsupported},
		{"ed digest", func() error { _, err := ed.SignDigest(ePriv, make([]byte, 32)); return err }, sign.ErrUnsupported},
		{"ed huge message", func() error { _, err := ed.SignMessage(ePriv, make([]byte, sign.MaxMessageSize+1)); return err }, sign.ErrInvalidPayload},
		{"secp zero key", func() error { _, err := k1.SignDigest(make([]byte, 32), make([]byte, 32)); return err }, sign.ErrInvalidKey},
		{"secp key over order", func() error {
			_, err := k1.PublicKey(unhexNoT("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"))
			return err
		}, sign.ErrInvalidKey},
		{"secp short key", func() error { _, err := k1.PublicKey(make([]byte, 31)); return err }, sign.ErrInvalidKey},
		{"ed short key", func() error { _, err := ed.SignMessage(make([]byte, 32), []byte("x")); return err }, sign.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.do(), tt.wantErr)
		})
	}
}

func unhexNoT(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

func BenchmarkSignDigestSecp256k1(b *testing.B) {
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	priv, _, _ := s.Generate()
	d := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignDigest(priv, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignDigestAfterIdle is one secp256k1 signature made right after
// its goroutine slept (time.Sleep of 200 µs, which on a VM can take a
// millisecond; ns/op includes it), as a lone request finds the enclave. On a
// VM whose idle vCPUs halt, work right after a wake-up runs slower than the
// same work in a tight loop (BenchmarkSignDigestSecp256k1). p50-ns/sign is
// the median time of the signatures alone, without the sleeps.
func BenchmarkSignDigestAfterIdle(b *testing.B) {
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	priv, _, _ := s.Generate()
	d := make([]byte, 32)
	var lat []time.Duration
	for b.Loop() {
		time.Sleep(200 * time.Microsecond)
		t := time.Now()
		if _, err := s.SignDigest(priv, d); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns/sign")
}

func BenchmarkSignMessageEd25519(b *testing.B) {
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_ED25519)
	priv, _, _ := s.Generate()
	m := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignMessage(priv, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSignParallel is the "raw" figure `make bench` compares the
// service against: secp256k1 digest signing in process, one goroutine per
// core (run with -cpu 2), no I/O.
func BenchmarkRawSignParallel(b *testing.B) {
	s, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	priv, _, _ := s.Generate()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := make([]byte, 32)
		for pb.Next() {
			d[0]++
			if _, err := s.SignDigest(priv, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

func TestPackRoundTrip(t *testing.T) {
	for _, alg := range []signerv1.Algorithm{
		signerv1.Algorithm_ALGORITHM_SECP256K1, signerv1.Algorithm_ALGORITHM_ED25519, signerv1.Algorithm_ALGORITHM_P256,
	} {
		t.Run(alg.String(), func(t *testing.T) {
			sc, ok := sign.Lookup(alg)
			require.True(t, ok)
			priv, pub, err := sc.Generate()
			require.NoError(t, err)
			var p sign.Packed
			require.NoError(t, sc.Pack(priv, pub, &p))
			require.Equal(t, priv, sc.Unpack(&p, nil))
			got, err := sc.UnpackPublic(&p)
			require.NoError(t, err)
			require.Equal(t, pub, got)
			require.Error(t, sc.Pack(priv[:len(priv)-1], pub, &p))
		})
	}
}

func TestP256VerifiesWithStdlib(t *testing.T) {
	sc, ok := sign.Lookup(signerv1.Algorithm_ALGORITHM_P256)
	require.True(t, ok)
	priv, pub, err := sc.Generate()
	require.NoError(t, err)
	derived, err := sc.PublicKey(priv)
	require.NoError(t, err)
	require.Equal(t, pub, derived)
	digest := sha256.Sum256([]byte("p256"))
	sig, err := sc.SignDigest(priv, digest[:])
	require.NoError(t, err)
	require.Len(t, sig, 64)
	pk, err := stdecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	require.NoError(t, err)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	require.True(t, stdecdsa.Verify(pk, digest[:], r, s))
	half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	require.LessOrEqual(t, s.Cmp(half), 0, "s must be low")
	_, err = sc.SignDigest(priv, digest[:31])
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
}
