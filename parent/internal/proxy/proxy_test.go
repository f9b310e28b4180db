package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// fakeEnclave answers Sign (the signature echoes the key id; key "bad" is
// NotFound) and records each call's method and deadline.
type fakeEnclave struct {
	methods   []enclavev1.Method
	deadlines []time.Duration
	fail      error
	rawAnswer []byte
}

func (f *fakeEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	f.methods = append(f.methods, enclavev1.Method(method))
	if d, ok := ctx.Deadline(); ok {
		f.deadlines = append(f.deadlines, time.Until(d))
	}
	if f.fail != nil {
		return f.fail
	}
	if enclavev1.Method(method) == enclavev1.Method_METHOD_GET_STATS {
		resp.(*enclavev1.GetStatsResponse).Keys = 7
		return nil
	}
	if enclavev1.Method(method) == enclavev1.Method_METHOD_SIGN_BATCH {
		out := &signerv1.SignBatchResponse{}
		for _, r := range req.(*enclavev1.SignBatchRequest).GetRequest().GetRequests() {
			out.Results = append(out.Results, &signerv1.SignResult{Result: &signerv1.SignResult_Response{
				Response: &signerv1.SignResponse{KeyId: r.GetKeyId(), Signature: []byte(r.GetKeyId())}}})
		}
		resp.(*enclavev1.SignBatchResponse).Response = out
		return nil
	}
	if enclavev1.Method(method) != enclavev1.Method_METHOD_SIGN {
		return status.Errorf(codes.Unimplemented, "method %d", method)
	}
	r := req.(*enclavev1.SignRequest).GetRequest()
	if r.GetKeyId() == "bad" {
		return status.Error(codes.NotFound, "key not found")
	}
	resp.(*enclavev1.SignResponse).Response = &signerv1.SignResponse{KeyId: r.GetKeyId(), Signature: []byte(r.GetKeyId())}
	return nil
}

// CallRaw decodes the request and encodes the answer of Call, so that the
// relay's byte handling is exercised against real encodings. rawAnswer, if
// set, is returned instead of the encoded answer.
func (f *fakeEnclave) CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error {
	in := new(enclavev1.SignRequest)
	if err := proto.Unmarshal(req, in); err != nil {
		return status.Error(codes.InvalidArgument, "malformed request")
	}
	out := new(enclavev1.SignResponse)
	if err := f.Call(ctx, method, in, out); err != nil {
		return err
	}
	if f.rawAnswer != nil {
		return resp(f.rawAnswer)
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return err
	}
	return resp(b)
}

func msgReq(id string, n int) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Message{Message: make([]byte, n)}}
}

func TestSignForwards(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		fail     error
		wantCode codes.Code
	}{
		{"ok", "k1", nil, codes.OK},
		{"enclave status kept", "bad", nil, codes.NotFound},
		{"link failure kept", "k1", status.Error(codes.Unavailable, "enclave unavailable"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeEnclave{fail: tt.fail}
			s := proxy.New(proxy.Config{Enclave: f})
			r, err := s.Sign(context.Background(), msgReq(tt.id, 8))
			require.Equal(t, tt.wantCode, status.Code(err), err)
			if err == nil {
				assert.Equal(t, []byte(tt.id), r.GetSignature())
			}
			// The call timeout is the link's (parent.TestCallTimeout).
		})
	}
}

func TestClientDeadlineKeptWhenShorter(t *testing.T) {
	f := &fakeEnclave{}
	s := proxy.New(proxy.Config{Enclave: f, CallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Sign(ctx, msgReq("k", 8))
	require.NoError(t, err)
	assert.LessOrEqual(t, f.deadlines[0], 50*time.Millisecond)
}

func TestParentSideLimits(t *testing.T) {
	f := &fakeEnclave{}
	s := proxy.New(proxy.Config{Enclave: f})
	_, err := s.Sign(context.Background(), msgReq("k", proxy.MaxMessageSize+1))
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = s.SignBatch(context.Background(), &signerv1.SignBatchRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = s.GetAttestation(context.Background(), &signerv1.GetAttestationRequest{Nonce: make([]byte, proxy.MaxNonce+1)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Empty(t, f.methods, "refused before reaching the enclave")
}

func TestSignRelayEdgeCases(t *testing.T) {
	tests := []struct {
		name      string
		req       *signerv1.SignRequest
		rawAnswer []byte
		wantCode  codes.Code
		wantMsg   string
	}{
		{"message at the limit", msgReq("k", proxy.MaxMessageSize), nil, codes.OK, ""},
		{"message over the limit", msgReq("k", proxy.MaxMessageSize+1), nil, codes.InvalidArgument, "message: must be at most"},
		{"digest", &signerv1.SignRequest{KeyId: "k", Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}, nil, codes.OK, ""},
		{"garbage answer", msgReq("k", 1), []byte{0x0a, 0xff}, codes.Internal, "malformed enclave answer"},
		{"answer without response", msgReq("k", 1), []byte{}, codes.Internal, "no response"},
		{"response repeated", msgReq("k", 1), []byte{0x0a, 0x00, 0x0a, 0x00}, codes.Internal, "repeated"},
		{"response of the wrong type", msgReq("k", 1), []byte{0x08, 0x01}, codes.Internal, "unexpected type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeEnclave{rawAnswer: tt.rawAnswer}
			s := proxy.New(proxy.Config{Enclave: f})
			_, err := s.Sign(context.Background(), tt.req)
			require.Equal(t, tt.wantCode, status.Code(err), err)
			assert.Contains(t, status.Convert(err).Message(), tt.wantMsg)
		})
	}
}

// FuzzCheckRequestSize: the relay's field scan never panics on hostile
// bytes, and it refuses whatever the check of decoded requests refuses (it
// may refuse more: it checks every occurrence of a repeated field and sums
// those of a payload message, which protobuf merges).
func FuzzCheckRequestSize(f *testing.F) {
	for _, tt := range sizeCases() {
		if tt.field != "key_id" && tt.field != "solana_message" {
			continue // small seeds keep the fuzzer fast; it grows fields itself
		}
		for _, r := range []*signerv1.SignRequest{tt.at, tt.over} {
			b, _ := proto.Marshal(r)
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	for _, r := range []*signerv1.SignRequest{
		{KeyId: "k", Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: &signerv1.EthTransaction{
			Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{Data: "0x00", Nonce: "1"}}}}},
		{KeyId: "k", Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{Psbt: []byte("psbt\xff")}}},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
		f.Add(append(b, b...)) // repeated: protobuf merges the payloads
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := proxy.CheckRequestSize(b)
		var r signerv1.SignRequest
		if proto.Unmarshal(b, &r) == nil && proxy.CheckDecodedSize(&r) != nil {
			require.Error(t, err, "an oversized field must be refused")
		}
	})
}

// Repeated occurrences of a payload message merge when decoded; the scan
// refuses them when together they pass a limit that each stays under.
func TestScanSumsRepeatedPayloadMessages(t *testing.T) {
	half := &signerv1.SignRequest{KeyId: "k", Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: &signerv1.EthTransaction{
		Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{AccessList: []*signerv1.EthAccessTuple{{Address: strings.Repeat("a", limits.EthFields/2)}}}}}}}
	b, err := proto.Marshal(half)
	require.NoError(t, err)
	require.NoError(t, proxy.CheckRequestSize(b), "one occurrence is under the limit")
	twice := append(b, b...)
	var merged signerv1.SignRequest
	require.NoError(t, proto.Unmarshal(twice, &merged))
	require.Error(t, proxy.CheckDecodedSize(&merged), "merged, it is over")
	err = proxy.CheckRequestSize(twice)
	require.Equal(t, codes.InvalidArgument, status.Code(err), err)
	assert.Contains(t, status.Convert(err).Message(), "eth_transaction.fields: ")
}

type sizeCase struct {
	field    string
	at, over *signerv1.SignRequest
}

// sizeCases has, for each SignRequest field with a size limit, a request
// with the field at its limit and one a byte over it.
func sizeCases() []sizeCase {
	const id = "key_00000000000000000000000000000001"
	req := func(p func(n int) *signerv1.SignRequest, max int) (*signerv1.SignRequest, *signerv1.SignRequest) {
		return p(max), p(max + 1)
	}
	var cases []sizeCase
	add := func(field string, max int, p func(n int) *signerv1.SignRequest) {
		at, over := req(p, max)
		cases = append(cases, sizeCase{field, at, over})
	}
	add("key_id", limits.KeyID, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: strings.Repeat("k", n), Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}
	})
	add("message", limits.Message, func(n int) *signerv1.SignRequest { return msgReq(id, n) })
	add("eth_transaction.unsigned_rlp", limits.EthUnsignedRLP, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: &signerv1.EthTransaction{
			Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: make([]byte, n)}}}}
	})
	add("eth_transaction.fields", limits.EthFields, func(n int) *signerv1.SignRequest {
		// data is field 10 of EthTxFields: 1 tag byte and 3 length bytes.
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: &signerv1.EthTransaction{
			Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{Data: strings.Repeat("a", n-4)}}}}}
	})
	add("eth_personal_message", limits.EthPersonalMessage, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthPersonalMessage{EthPersonalMessage: make([]byte, n)}}
	})
	add("eth_typed_data_json", limits.EthTypedDataJSON, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthTypedDataJson{EthTypedDataJson: strings.Repeat("a", n)}}
	})
	add("bitcoin_psbt.psbt", limits.BitcoinPSBT, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{Psbt: make([]byte, n)}}}
	})
	add("solana_message", limits.SolanaMessage, func(n int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: make([]byte, n)}}
	})
	return cases
}

// Every field with a size limit is refused over it by the parent, with the
// enclave's message naming the field, before anything reaches the enclave;
// at the limit it is forwarded. In SignBatch such an item fails on its own.
func TestParentRefusesOversizedFields(t *testing.T) {
	for _, tt := range sizeCases() {
		t.Run(tt.field, func(t *testing.T) {
			f := &fakeEnclave{}
			s := proxy.New(proxy.Config{Enclave: f})
			_, err := s.Sign(context.Background(), tt.over)
			require.Equal(t, codes.InvalidArgument, status.Code(err), err)
			assert.True(t, strings.HasPrefix(status.Convert(err).Message(), tt.field+": "), status.Convert(err).Message())
			out, err := s.SignBatch(context.Background(), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{tt.over}})
			require.NoError(t, err, "an item fails on its own")
			e := out.GetResults()[0].GetError()
			require.Equal(t, codes.InvalidArgument, codes.Code(e.GetCode()), e)
			assert.True(t, strings.HasPrefix(e.GetMessage(), tt.field+": "), e.GetMessage())
			assert.Empty(t, f.methods, "refused before reaching the enclave")

			b, err := proto.Marshal(tt.at)
			require.NoError(t, err)
			require.NoError(t, proxy.CheckRequestSize(b), "at the limit")
			require.NoError(t, proxy.CheckDecodedSize(tt.at), "at the limit")
		})
	}
}

// A SignBatch item over a size limit fails on its own; the other items are
// forwarded and their results come back in their places.
func TestSignBatchOversizedItemFailsAlone(t *testing.T) {
	f := &fakeEnclave{}
	s := proxy.New(proxy.Config{Enclave: f})
	out, err := s.SignBatch(context.Background(), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{
		msgReq("k0", 8), msgReq("k1", limits.Message+1), msgReq("k2", 8),
	}})
	require.NoError(t, err)
	require.Len(t, out.GetResults(), 3)
	assert.Equal(t, []byte("k0"), out.GetResults()[0].GetResponse().GetSignature())
	assert.Equal(t, codes.InvalidArgument, codes.Code(out.GetResults()[1].GetError().GetCode()))
	assert.Equal(t, []byte("k2"), out.GetResults()[2].GetResponse().GetSignature())
	assert.Equal(t, []enclavev1.Method{enclavev1.Method_METHOD_SIGN_BATCH}, f.methods, "one batch of the two others")
}

func TestEnclaveCollectorSharesCalls(t *testing.T) {
	f := &fakeEnclave{}
	c := proxy.NewEnclaveCollector(proxy.New(proxy.Config{Enclave: f}), time.Second)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	for range 5 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		require.NotEmpty(t, mfs)
	}
	assert.Len(t, f.methods, 1, "scrapes within a second share one enclave call")
	n, err := testutil.GatherAndCount(reg, "nitrosigner_enclave_keys")
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	f.fail = status.Error(codes.Unavailable, "enclave unavailable")
	c = proxy.NewEnclaveCollector(proxy.New(proxy.Config{Enclave: f}), time.Second)
	assert.Equal(t, 0.0, testutil.ToFloat64(onlyUp{c}), "an unreachable enclave reports up 0")
}

// onlyUp exposes just the up gauge of a collector that failed to reach the
// enclave (it then emits nothing else).
type onlyUp struct{ *proxy.EnclaveCollector }
