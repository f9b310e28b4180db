package server_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// withUnknown adds field num (a varint) to m, as a client built against a
// newer schema would send it.
func withUnknown[T proto.Message](m T, num protowire.Number) T {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(b, 1))
	return m
}

func TestUnknownFieldsRefused(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1).GetKeyId()
	ethFields := func() *signerv1.EthTxFields {
		return &signerv1.EthTxFields{Type: 2, ChainId: "1", Nonce: "0", MaxFeePerGas: "1", MaxPriorityFeePerGas: "1",
			Gas: "21000", To: "0x00000000000000000000000000000000000000aa", Value: "1",
			AccessList: []*signerv1.EthAccessTuple{{Address: "0x00000000000000000000000000000000000000bb"}, {Address: "0x00000000000000000000000000000000000000cc"}}}
	}
	ethReq := func(f *signerv1.EthTxFields) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: k1, Payload: &signerv1.SignRequest_EthTransaction{
			EthTransaction: &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: f}}}}
	}
	// The same transaction without unknown fields signs: the refusals
	// below are the unknown fields' doing.
	_, err := call(t, s, enclavev1.Method_METHOD_SIGN, &enclavev1.SignRequest{Request: ethReq(ethFields())}, &enclavev1.SignResponse{})
	require.NoError(t, err)

	tuple := ethFields()
	withUnknown(tuple.AccessList[1], 3)
	tests := []struct {
		name string
		req  *signerv1.SignRequest
		want string
	}{
		{"request", withUnknown(signReq(k1, make([]byte, 32), nil).GetRequest(), 20), "request: field number 20 is not known"},
		{"reserved auth field", withUnknown(signReq(k1, make([]byte, 32), nil).GetRequest(), 16), "request: field number 16"},
		{"eth fields", ethReq(withUnknown(ethFields(), 12)), "eth_transaction.fields: field number 12"},
		{"access list entry", ethReq(tuple), "eth_transaction.fields.access_list[1]: field number 3"},
		{"eth transaction", &signerv1.SignRequest{KeyId: k1, Payload: &signerv1.SignRequest_EthTransaction{
			EthTransaction: withUnknown(&signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: ethFields()}}, 3)}},
			"eth_transaction: field number 3"},
		{"bitcoin sighash", &signerv1.SignRequest{KeyId: k1, Payload: &signerv1.SignRequest_BitcoinSighash{
			BitcoinSighash: withUnknown(&signerv1.BitcoinSighash{Sighash: make([]byte, 32), Scheme: 1, SighashType: 1}, 6)}},
			"bitcoin_sighash: field number 6"},
		{"bitcoin psbt", &signerv1.SignRequest{KeyId: k1, Payload: &signerv1.SignRequest_BitcoinPsbt{
			BitcoinPsbt: withUnknown(&signerv1.BitcoinPsbt{Psbt: []byte("psbt\xff")}, 3)}},
			"bitcoin_psbt: field number 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, s, enclavev1.Method_METHOD_SIGN, &enclavev1.SignRequest{Request: tt.req}, &enclavev1.SignResponse{})
			st, _ := status.FromError(err)
			assert.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
			assert.Contains(t, st.Message(), tt.want)
			assert.Contains(t, st.Message(), "upgrade the enclave")

			// In a batch the item fails and its neighbour signs.
			r, err := call(t, s, enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{
				Requests: []*signerv1.SignRequest{tt.req, signReq(k1, make([]byte, 32), nil).GetRequest()}}}, &enclavev1.SignBatchResponse{})
			require.NoError(t, err)
			res := r.GetResponse().GetResults()
			require.Len(t, res, 2)
			assert.Equal(t, int32(codes.InvalidArgument), res[0].GetError().GetCode())
			assert.Contains(t, res[0].GetError().GetMessage(), tt.want)
			assert.Len(t, res[1].GetResponse().GetSignature(), 65)
		})
	}
}
