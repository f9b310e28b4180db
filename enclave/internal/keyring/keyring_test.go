package keyring_test

import (
	"context"
	"crypto/ed25519"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestCreateGetUse(t *testing.T) {
	ctx := context.Background()
	kr := keyring.NewMemory(keyring.Config{})
	k, err := kr.Create(ctx, signerv1.Algorithm_ALGORITHM_ED25519, map[string]string{"team": "ops"})
	require.NoError(t, err)
	assert.True(t, keyring.ValidID(k.ID), k.ID)
	assert.Equal(t, signerv1.KeyState_KEY_STATE_ENABLED, k.State)

	got, err := kr.Get(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, k, got)

	// Returned values are copies: mutating them does not change the keyring.
	got.PublicKey[0] ^= 1
	got.Labels["team"] = "x"
	again, err := kr.Get(ctx, k.ID)
	require.NoError(t, err)
	assert.Equal(t, k, again)

	var sig []byte
	alg, err := kr.Use(ctx, k.ID, func(s sign.Scheme, priv []byte) error {
		var err error
		sig, err = s.SignMessage(priv, []byte("m"))
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, signerv1.Algorithm_ALGORITHM_ED25519, alg)
	assert.True(t, ed25519.Verify(k.PublicKey, []byte("m"), sig))
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	kr := keyring.NewMemory(keyring.Config{})
	_, err := kr.Create(ctx, signerv1.Algorithm(99), nil)
	require.ErrorIs(t, err, keyring.ErrUnknownAlgorithm)
	_, err = kr.Get(ctx, "key_00000000000000000000000000000000")
	require.ErrorIs(t, err, keyring.ErrNotFound)
	_, err = kr.Use(ctx, "nope", func(sign.Scheme, []byte) error { t.Fatal("called"); return nil })
	require.ErrorIs(t, err, keyring.ErrNotFound)
	require.ErrorIs(t, kr.Delete(ctx, "nope"), keyring.ErrNotFound)
}

func TestDeleteZeroizes(t *testing.T) {
	ctx := context.Background()
	kr := keyring.NewMemory(keyring.Config{})
	k, err := kr.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	var held []byte
	_, err = kr.Use(ctx, k.ID, func(_ sign.Scheme, priv []byte) error { held = priv; return nil })
	require.NoError(t, err)
	require.NotEqual(t, make([]byte, 32), held)
	require.NoError(t, kr.Delete(ctx, k.ID))
	assert.Equal(t, make([]byte, 32), held, "private bytes must be zeroized on delete")
	_, err = kr.Get(ctx, k.ID)
	require.ErrorIs(t, err, keyring.ErrNotFound)
}

func TestListPages(t *testing.T) {
	ctx := context.Background()
	kr := keyring.NewMemory(keyring.Config{})
	const n = 25
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := kr.Create(ctx, signerv1.Algorithm_ALGORITHM_ED25519, nil)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	var all []string
	after := ""
	for {
		page, err := kr.List(ctx, after, 10)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, k := range page {
			all = append(all, k.ID)
		}
		after = page[len(page)-1].ID
	}
	require.Len(t, all, n)
	assert.IsIncreasing(t, all)
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"key_0123456789abcdef0123456789abcdef", true},
		{"key_0123456789ABCDEF0123456789abcdef", false},
		{"key_0123", false},
		{"0123456789abcdef0123456789abcdef", false},
		{"", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, keyring.ValidID(tt.id), tt.id)
	}
}
