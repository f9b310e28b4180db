package main

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestKeysVerify(t *testing.T) {
	pcr0, _, _ := nsmsim.MeasureImage(simImage)
	setup := func(t *testing.T) (*fakeSigner, []string) {
		fake := newFakeSigner().withSimulator(t, simConfig())
		return fake, []string{"--root", writeRoot(t, fake), "--pcrs", writePCRs(t, `{"PCR0": "`+hex.EncodeToString(pcr0)+`"}`)}
	}
	swapKey := func(k *signerv1.Key, _ *signerv1.KeyProof) { k.PublicKey = append([]byte(nil), edPublicKey...) }

	t.Run("get", func(t *testing.T) {
		fake, trust := setup(t)
		addr := startServer(t, fake)
		code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "--json", "keys", "get", keySecp, "--verify"}, trust...)...)
		require.Equal(t, 0, code, stderr)
		v := decodeOne(t, stdout)
		assert.Equal(t, true, v["verified"])
		assert.Equal(t, fake.sim.ModuleID(), v["enclave_module_id"])
		assert.Equal(t, keySecp, v["key_id"])
		assert.Empty(t, stderr)

		code, stdout, _ = runCLI(t, append([]string{"--addr", addr, "keys", "get", keySecp, "--verify"}, trust...)...)
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, "public key and addresses signed by attested enclave "+fake.sim.ModuleID())

		// Without --verify nothing is claimed.
		code, stdout, _ = runCLI(t, "--addr", addr, "--json", "keys", "get", keySecp)
		require.Equal(t, 0, code)
		assert.NotContains(t, stdout, "verified")
	})
	t.Run("get swapped by the parent", func(t *testing.T) {
		fake, trust := setup(t)
		fake.OnKey = swapKey
		addr := startServer(t, fake)
		code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "keys", "get", keySecp, "--verify"}, trust...)...)
		assert.Equal(t, 1, code)
		assert.Empty(t, stdout, "nothing unverified is printed")
		assert.Contains(t, stderr, "Unauthenticated: key "+keySecp+": verification failed; do not use its addresses")
		assert.Contains(t, stderr, "public key differs")
	})
	t.Run("create", func(t *testing.T) {
		fake, trust := setup(t)
		addr := startServer(t, fake)
		code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "--json", "keys", "create", "--alg", "secp256k1", "--verify"}, trust...)...)
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, true, decodeOne(t, stdout)["verified"])
		assert.Len(t, fake.created.GetAttestationNonce(), 32, "a fresh nonce is sent with the request")

		fake.OnKey = swapKey
		code, stdout, stderr = runCLI(t, append([]string{"--addr", addr, "keys", "create", "--alg", "secp256k1", "--verify"}, trust...)...)
		assert.Equal(t, 1, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "verification failed; do not use its addresses")
		assert.Contains(t, stderr, "key key_", "the key exists: its id is named so it can be disabled")
	})
	t.Run("no pcrs", func(t *testing.T) {
		fake, trust := setup(t)
		addr := startServer(t, fake)
		code, _, stderr := runCLI(t, "--addr", addr, "keys", "get", keySecp, "--verify", trust[0], trust[1])
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stderr, "warning: no --pcrs")
	})
	t.Run("usage", func(t *testing.T) {
		fake, trust := setup(t)
		addr := startServer(t, fake)
		code, _, stderr := runCLI(t, "--addr", addr, "keys", "get", keySecp, "--pcrs", trust[3])
		assert.Equal(t, 2, code)
		assert.True(t, strings.Contains(stderr, "need --verify"), stderr)
	})
}
