package server_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// ApplyKeyChanges: a cached key older than a change made through another
// parent is dropped and its older blob refused; a deletion sticks; the
// position only moves forward and a bare call reports it.
func TestApplyKeyChanges(t *testing.T) {
	s, _ := newServer(t)
	apply := func(r *enclavev1.ApplyKeyChangesRequest) (uint64, error) {
		out, err := call(t, s, enclavev1.Method_METHOD_APPLY_KEY_CHANGES, r, &enclavev1.ApplyKeyChangesResponse{})
		return out.GetSeq(), err
	}
	digest := make([]byte, 32)
	sign := func(id string) error {
		_, err := call(t, s, enclavev1.Method_METHOD_SIGN, signReq(id, digest, nil), &enclavev1.SignResponse{})
		return err
	}
	seq, err := apply(&enclavev1.ApplyKeyChangesRequest{})
	require.NoError(t, err)
	assert.Zero(t, seq, "a new enclave has applied nothing")

	a := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	b := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	c := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ida, idb, idc := a.GetKey().GetKeyId(), b.GetKey().GetKeyId(), c.GetKey().GetKeyId()

	seq, err = apply(&enclavev1.ApplyKeyChangesRequest{Seq: 7, Changes: []*enclavev1.KeyChange{
		{KeyId: ida, Generation: 2}, // changed elsewhere: dropped
		{KeyId: idb, Generation: 1}, // this enclave has it already
		{KeyId: idc, Deleted: true},
	}})
	require.NoError(t, err)
	assert.EqualValues(t, 7, seq)
	assert.Equal(t, enclavev1.KeyNotLoaded, status.Convert(sign(ida)).Message(), "a's older copy was dropped")
	require.NoError(t, sign(idb), "b is as new as the change")
	assert.Equal(t, enclavev1.KeyNotLoaded, status.Convert(sign(idc)).Message(), "c was dropped")
	loaded, err := call(t, s, enclavev1.Method_METHOD_LOAD_KEYS,
		&enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{blobsOf(a), blobsOf(c)}}, &enclavev1.LoadKeysResponse{})
	require.NoError(t, err)
	assert.Equal(t, int32(codes.Aborted), loaded.GetResults()[0].GetCode(), "a's generation-1 blob is refused")
	assert.Equal(t, int32(codes.NotFound), loaded.GetResults()[1].GetCode(), "c stays deleted")

	seq, err = apply(&enclavev1.ApplyKeyChangesRequest{Seq: 3, Changes: []*enclavev1.KeyChange{{KeyId: idb, Generation: 1}}})
	require.NoError(t, err)
	assert.EqualValues(t, 7, seq, "the position never moves back")

	seq, err = apply(&enclavev1.ApplyKeyChangesRequest{Seq: 9, EvictAll: true})
	require.NoError(t, err)
	assert.EqualValues(t, 9, seq)
	assert.Equal(t, enclavev1.KeyNotLoaded, status.Convert(sign(idb)).Message(), "evict_all dropped b")
	seq, err = apply(&enclavev1.ApplyKeyChangesRequest{})
	require.NoError(t, err)
	assert.EqualValues(t, 9, seq)

	tooMany := make([]*enclavev1.KeyChange, server.MaxChanges+1)
	for i := range tooMany {
		tooMany[i] = &enclavev1.KeyChange{KeyId: ida, Generation: 1}
	}
	for name, r := range map[string]*enclavev1.ApplyKeyChangesRequest{
		"changes[0].key_id":     {Seq: 10, Changes: []*enclavev1.KeyChange{{Generation: 2}}},
		"changes[1].key_id":     {Seq: 10, Changes: []*enclavev1.KeyChange{{KeyId: ida, Generation: 2}, {KeyId: strings.Repeat("k", 200)}}},
		"changes[0].generation": {Seq: 10, Changes: []*enclavev1.KeyChange{{KeyId: ida, Generation: 2, Deleted: true}}},
		"seq":                   {EvictAll: true},
		"changes":               {Seq: 10, Changes: tooMany},
	} {
		_, err := apply(r)
		assert.Equal(t, codes.InvalidArgument, status.Code(err), name)
		assert.True(t, strings.HasPrefix(status.Convert(err).Message(), name+":"), "%s: %v", name, err)
	}
	seq, err = apply(&enclavev1.ApplyKeyChangesRequest{})
	require.NoError(t, err)
	assert.EqualValues(t, 9, seq, "refused calls change nothing")
}
