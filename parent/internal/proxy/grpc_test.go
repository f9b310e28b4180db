package proxy_test

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// serve runs svc the way the parent does (raw codec, Register, the
// interceptor) over an in-memory connection.
func serve(t *testing.T, svc *proxy.Service) *grpc.ClientConn {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	s := grpc.NewServer(
		grpc.ForceServerCodecV2(proxy.NewCodec()),
		grpc.ChainUnaryInterceptor(proxy.UnaryInterceptor(slog.New(slog.DiscardHandler), nil)),
	)
	proxy.Register(s, svc)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestRawRelayOverGRPC(t *testing.T) {
	f := &fakeEnclave{}
	conn := serve(t, proxy.New(proxy.Config{Enclave: f}))
	c := signerv1.NewSignerServiceClient(conn)

	r, err := c.Sign(context.Background(), msgReq("k1", 32))
	require.NoError(t, err)
	assert.Equal(t, []byte("k1"), r.GetSignature(), "the enclave's answer reaches the client unchanged")

	_, err = c.Sign(context.Background(), msgReq("bad", 32))
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = c.Sign(context.Background(), msgReq("k1", proxy.MaxMessageSize+1))
	assert.Equal(t, codes.InvalidArgument, status.Code(err))

	// Other services keep the standard codec.
	hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.GetStatus())
}

// TestRawRelayKeepsUnknownFields: the enclave receives the client's bytes,
// including fields this parent's schema does not know.
func TestRawRelayKeepsUnknownFields(t *testing.T) {
	var got []byte
	f := &recordingEnclave{fakeEnclave: &fakeEnclave{}, got: &got}
	conn := serve(t, proxy.New(proxy.Config{Enclave: f}))
	req := msgReq("k1", 4)
	req.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x2a}) // field 127, varint 42
	_, err := signerv1.NewSignerServiceClient(conn).Sign(context.Background(), req)
	require.NoError(t, err)
	want, err := proto.Marshal(req)
	require.NoError(t, err)
	assert.Contains(t, string(got), string(want), "the client's bytes arrive unchanged inside the wrapper")
}

type recordingEnclave struct {
	*fakeEnclave
	got *[]byte
}

func (r *recordingEnclave) CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error {
	*r.got = append([]byte(nil), req...)
	return r.fakeEnclave.CallRaw(ctx, method, req, resp)
}

// bytesCodec sends and receives *[]byte as they are, to put bytes that are
// no valid protobuf message on the wire.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (bytesCodec) Name() string { return "proto" }

// A request that is no valid encoding of its message is the client's
// mistake: InvalidArgument on every method, never Internal.
func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	f := &fakeEnclave{}
	conn := serve(t, proxy.New(proxy.Config{Enclave: f}))
	invoke := func(method string, body []byte) *status.Status {
		var out []byte
		err := conn.Invoke(context.Background(), "/"+signerv1.SignerService_ServiceDesc.ServiceName+"/"+method,
			&body, &out, grpc.ForceCodecV2(bytesCodec{}))
		return status.Convert(err)
	}
	for _, m := range signerv1.SignerService_ServiceDesc.Methods {
		t.Run(m.MethodName, func(t *testing.T) {
			st := invoke(m.MethodName, []byte{0xff}) // a tag cut short
			require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
			assert.Contains(t, st.Message(), "malformed request")
		})
	}
	// key_id (field 1) holding bytes that are not UTF-8.
	st := invoke("GetKey", []byte{0x0a, 0x02, 0xff, 0xfe})
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	assert.Contains(t, st.Message(), "malformed request")
	assert.Empty(t, f.methods, "nothing malformed reaches the enclave")
}
