package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// lifecycleFake answers the lifecycle RPCs and records them.
type lifecycleFake struct {
	*fakeSigner
	got []string
	arn string
}

func (f *lifecycleFake) key(id string, st signerv1.KeyState) (*signerv1.Key, error) {
	k, ok := f.keys[id]
	if !ok {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	out := proto.Clone(k).(*signerv1.Key)
	out.State = st
	out.Sealing = &signerv1.Sealing{KmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/k", KekId: "kek_1", Generation: 2}
	out.Addresses = &signerv1.Addresses{Ethereum: "0xAbC0000000000000000000000000000000000001"}
	return out, nil
}

func (f *lifecycleFake) DisableKey(_ context.Context, r *signerv1.DisableKeyRequest) (*signerv1.DisableKeyResponse, error) {
	f.got = append(f.got, "disable "+r.GetKeyId())
	k, err := f.key(r.GetKeyId(), signerv1.KeyState_KEY_STATE_DISABLED)
	return &signerv1.DisableKeyResponse{Key: k}, err
}

func (f *lifecycleFake) EnableKey(_ context.Context, r *signerv1.EnableKeyRequest) (*signerv1.EnableKeyResponse, error) {
	f.got = append(f.got, "enable "+r.GetKeyId())
	k, err := f.key(r.GetKeyId(), signerv1.KeyState_KEY_STATE_ENABLED)
	return &signerv1.EnableKeyResponse{Key: k}, err
}

func (f *lifecycleFake) RotateKey(_ context.Context, r *signerv1.RotateKeyRequest) (*signerv1.RotateKeyResponse, error) {
	f.got = append(f.got, "rotate "+r.GetKeyId())
	f.arn = r.GetKmsKeyArn()
	k, err := f.key(r.GetKeyId(), signerv1.KeyState_KEY_STATE_ENABLED)
	return &signerv1.RotateKeyResponse{Key: k}, err
}

func (f *lifecycleFake) DeleteKey(_ context.Context, r *signerv1.DeleteKeyRequest) (*signerv1.DeleteKeyResponse, error) {
	f.got = append(f.got, "delete "+r.GetKeyId())
	if _, ok := f.keys[r.GetKeyId()]; !ok {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	return &signerv1.DeleteKeyResponse{}, nil
}

func TestKeysLifecycleCommands(t *testing.T) {
	f := &lifecycleFake{fakeSigner: newFakeSigner()}
	addr := startServer(t, f)

	code, out, _ := runCLI(t, "--addr", addr, "--json", "keys", "disable", keySecp)
	require.Equal(t, 0, code)
	v := decodeOne(t, out)
	assert.Equal(t, "disabled", v["state"])
	assert.Equal(t, map[string]any{"ethereum": "0xAbC0000000000000000000000000000000000001"}, v["addresses"])
	assert.Equal(t, "kek_1", v["sealing"].(map[string]any)["kek_id"])

	code, out, _ = runCLI(t, "--addr", addr, "keys", "enable", keySecp)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "enabled")
	assert.Contains(t, out, "address.ethereum")

	const arn = "arn:aws:kms:us-east-1:111122223333:key/other"
	code, _, _ = runCLI(t, "--addr", addr, "keys", "rotate", keySecp, "--kms-key", arn)
	require.Equal(t, 0, code)
	assert.Equal(t, arn, f.arn)

	code, _, stderr := runCLI(t, "--addr", addr, "keys", "delete", keySecp)
	assert.Equal(t, 2, code, "delete needs --yes")
	assert.Contains(t, stderr, "--yes")
	code, out, _ = runCLI(t, "--addr", addr, "--json", "keys", "delete", keySecp, "--yes")
	require.Equal(t, 0, code)
	assert.Equal(t, map[string]any{"key_id": keySecp, "deleted": true}, decodeOne(t, out))

	code, _, stderr = runCLI(t, "--addr", addr, "keys", "disable", "key_00000000000000000000000000000000")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "NotFound")
	code, _, _ = runCLI(t, "--addr", addr, "keys", "disable")
	assert.Equal(t, 2, code)
	assert.Equal(t, []string{"disable " + keySecp, "enable " + keySecp, "rotate " + keySecp, "delete " + keySecp,
		"disable key_00000000000000000000000000000000"}, f.got)
}
