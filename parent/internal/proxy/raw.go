package proxy

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Sign requests are relayed as the client's own bytes: the parent neither
// decodes nor re-encodes them, and the enclave, which validates everything,
// receives exactly what the client sent (what end-to-end request
// authentication will need). Only the fields' sizes are checked here, by
// scanning the encoding.

// rawMessage is an encoded protobuf message relayed without decoding.
type rawMessage struct{ b []byte }

// Codec is the gRPC codec of the parent's server: rawMessage values pass
// through as bytes, every other message uses the standard proto codec.
type Codec struct{ proto encoding.CodecV2 }

var _ encoding.CodecV2 = Codec{}

// NewCodec returns the parent's server codec.
func NewCodec() Codec { return Codec{proto: encoding.GetCodecV2("proto")} }

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawMessage); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Name implements encoding.CodecV2; it replaces the "proto" codec.
func (Codec) Name() string { return "proto" }

// Register registers svc on s with Sign relayed as raw bytes. The server
// must use [NewCodec] (grpc.ForceServerCodecV2): with the standard codec
// every Sign fails with Internal. Interceptors see Sign's request and
// response as opaque values, not proto messages. A request of another
// method that does not decode is refused with InvalidArgument (gRPC's own
// decoding would answer Internal, which this API keeps for its own bugs).
func Register(s *grpc.Server, svc *Service) {
	desc := signerv1.SignerService_ServiceDesc
	desc.Methods = append([]grpc.MethodDesc(nil), desc.Methods...)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "Sign" {
			desc.Methods[i].Handler = rawSignHandler
		} else {
			desc.Methods[i].Handler = decodeAsClientError(desc.Methods[i].Handler)
		}
	}
	s.RegisterService(&desc, svc)
}

// decodeAsClientError wraps a generated handler so that its request is
// received as bytes and decoded here, where a malformed request is the
// client's mistake (InvalidArgument) rather than gRPC's Internal.
func decodeAsClientError(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		return h(srv, ctx, func(v any) error {
			m, ok := v.(proto.Message)
			if !ok {
				return dec(v)
			}
			var in rawMessage
			if err := dec(&in); err != nil {
				return err
			}
			if err := proto.Unmarshal(in.b, m); err != nil {
				return status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
			}
			return nil
		}, ic)
	}
}

func rawSignHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(rawMessage)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Service)
	if interceptor == nil {
		return s.signRaw(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: signerv1.SignerService_Sign_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.signRaw(ctx, req.(*rawMessage))
	})
}

// Field numbers the relay relies on; fixed by the .proto files.
const (
	enclaveWrapperField = 1 // nitrosigner.enclave.v1.Sign{Request,Response}.{request,response}
)

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// signRaw relays one encoded nitrosigner.v1.SignRequest to the enclave and
// returns the encoded nitrosigner.v1.SignResponse.
func (s *Service) signRaw(ctx context.Context, in *rawMessage) (*rawMessage, error) {
	if err := s.frozenErr(); err != nil {
		return nil, err
	}
	if err := checkRequestSize(in.b); err != nil {
		return nil, err
	}
	out, err := s.signRawOnce(ctx, in)
	if err == nil || !isNotLoaded(err) {
		return out, err
	}
	// The enclave has not loaded the key (first use, eviction, restart):
	// hand it the blobs and sign again.
	id := signKeyID(in.b)
	if id == "" {
		return nil, err
	}
	if verr := validKeyID(id); verr != nil {
		return nil, verr
	}
	if lerr := s.loadOne(ctx, id); lerr != nil {
		return nil, lerr
	}
	// A load can take long (store, KMS): a freeze answered meanwhile must
	// hold for this call too.
	if err := s.frozenErr(); err != nil {
		return nil, err
	}
	return s.signRawOnce(ctx, in)
}

func (s *Service) signRawOnce(ctx context.Context, in *rawMessage) (*rawMessage, error) {
	// enclave.v1.SignRequest{request: <client bytes>}
	bp := framePool.Get().(*[]byte)
	req := protowire.AppendTag((*bp)[:0], enclaveWrapperField, protowire.BytesType)
	req = protowire.AppendBytes(req, in.b)
	out := new(rawMessage)
	err := s.enclave.CallRaw(ctx, uint16(enclavev1.Method_METHOD_SIGN), req, func(resp []byte) error {
		inner, ok, err := field(resp, enclaveWrapperField)
		switch {
		case err != nil:
			return status.Errorf(codes.Internal, "malformed enclave answer: %v", err)
		case !ok:
			return status.Error(codes.Internal, "malformed enclave answer: no response")
		}
		out.b = append([]byte(nil), inner...)
		return nil
	})
	if cap(req) <= 64<<10 {
		*bp = req[:0]
		framePool.Put(bp)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fieldLimit is the size limit of one length-delimited field of a
// SignRequest, or of a field of the message in it (sub).
type fieldLimit struct {
	name string
	max  int
	sub  map[protowire.Number]fieldLimit
}

// requestLimits are the size limits of nitrosigner.v1.SignRequest, by field
// number (fixed by the .proto file); package limits has the values.
var requestLimits = map[protowire.Number]fieldLimit{
	1: {name: "key_id", max: limits.KeyID},
	3: {name: "message", max: limits.Message},
	4: {name: "eth_transaction", sub: map[protowire.Number]fieldLimit{
		1: {name: "eth_transaction.unsigned_rlp", max: limits.EthUnsignedRLP},
		2: {name: "eth_transaction.fields", max: limits.EthFields},
	}},
	5: {name: "eth_personal_message", max: limits.EthPersonalMessage},
	6: {name: "eth_typed_data_json", max: limits.EthTypedDataJSON},
	8: {name: "bitcoin_psbt", sub: map[protowire.Number]fieldLimit{
		1: {name: "bitcoin_psbt.psbt", max: limits.BitcoinPSBT},
	}},
	9: {name: "solana_message", max: limits.SolanaMessage},
}

// checkRequestSize refuses an encoded SignRequest with a field over its size
// limit, and bytes that are not a protobuf message, before anything is
// decoded or forwarded. It is never laxer than the enclave's decoding: every
// occurrence of a repeated field is checked, and the sizes of a payload
// message's fields are summed over its occurrences, which protobuf merges.
func checkRequestSize(b []byte) error {
	return checkFields(b, requestLimits, nil)
}

// checkFields checks the fields of b against lim. Within a payload message,
// sums holds the sizes seen so far of each limited field.
func checkFields(b []byte, lim map[protowire.Number]fieldLimit, sums map[string]int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return status.Error(codes.InvalidArgument, "malformed request")
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return status.Error(codes.InvalidArgument, "malformed request")
		}
		if l, ok := lim[num]; ok && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			var err error
			switch {
			case l.sub != nil:
				if sums == nil {
					sums = map[string]int{}
				}
				err = checkFields(v, l.sub, sums)
			case sums != nil:
				sums[l.name] += len(v)
				err = sizeError(l.name, sums[l.name], l.max)
			default:
				err = sizeError(l.name, len(v), l.max)
			}
			if err != nil {
				return err
			}
		}
		b = b[m:]
	}
	return nil
}

// sizeError is the enclave's refusal of a field of n bytes over max, word
// for word, or nil.
func sizeError(name string, n, max int) error {
	switch {
	case n <= max:
		return nil
	case name == "key_id":
		return status.Errorf(codes.InvalidArgument, "key_id: longer than %d bytes", max)
	case name == "eth_transaction.fields":
		return status.Errorf(codes.InvalidArgument, "%s: must encode to at most %d bytes, got %d", name, max, n)
	}
	return status.Errorf(codes.InvalidArgument, "%s: must be at most %d bytes, got %d", name, max, n)
}

// checkDecodedSize applies the limits of [checkRequestSize] to a decoded
// SignRequest (the items of a SignBatch).
func checkDecodedSize(r *signerv1.SignRequest) error {
	if err := sizeError("key_id", len(r.GetKeyId()), limits.KeyID); err != nil {
		return err
	}
	switch p := r.GetPayload().(type) {
	case *signerv1.SignRequest_Message:
		return sizeError("message", len(p.Message), limits.Message)
	case *signerv1.SignRequest_EthTransaction:
		if err := sizeError("eth_transaction.unsigned_rlp", len(p.EthTransaction.GetUnsignedRlp()), limits.EthUnsignedRLP); err != nil {
			return err
		}
		if f := p.EthTransaction.GetFields(); f != nil {
			return sizeError("eth_transaction.fields", proto.Size(f), limits.EthFields)
		}
	case *signerv1.SignRequest_EthPersonalMessage:
		return sizeError("eth_personal_message", len(p.EthPersonalMessage), limits.EthPersonalMessage)
	case *signerv1.SignRequest_EthTypedDataJson:
		return sizeError("eth_typed_data_json", len(p.EthTypedDataJson), limits.EthTypedDataJSON)
	case *signerv1.SignRequest_BitcoinPsbt:
		return sizeError("bitcoin_psbt.psbt", len(p.BitcoinPsbt.GetPsbt()), limits.BitcoinPSBT)
	case *signerv1.SignRequest_SolanaMessage:
		return sizeError("solana_message", len(p.SolanaMessage), limits.SolanaMessage)
	}
	return nil
}

// field returns the value of the length-delimited field num of an encoded
// message, and whether it was present. The enclave writes it once; a message
// that repeats it is refused rather than merged.
func field(b []byte, num protowire.Number) (v []byte, ok bool, err error) {
	for len(b) > 0 {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return nil, false, protowire.ParseError(k)
		}
		b = b[k:]
		if n == num {
			if typ != protowire.BytesType || ok {
				return nil, false, fmt.Errorf("field %d: unexpected type or repeated", num)
			}
			val, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false, protowire.ParseError(m)
			}
			v, ok, b = val, true, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return nil, false, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return v, ok, nil
}

// Sign implements signerv1.SignerServiceServer through the same relay, for
// callers that hold a decoded request.
func (s *Service) Sign(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "encode request: %v", err)
	}
	out, err := s.signRaw(ctx, &rawMessage{b: b})
	if err != nil {
		return nil, err
	}
	resp := new(signerv1.SignResponse)
	if err := proto.Unmarshal(out.b, resp); err != nil {
		return nil, status.Error(codes.Internal, fmt.Sprintf("malformed enclave answer: %v", err))
	}
	return resp, nil
}
