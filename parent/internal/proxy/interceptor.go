package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// RequestIDHeader is the metadata key carrying a request id. A client may
// set it (printable ASCII, at most 64 bytes); otherwise the parent makes one.
// The id is sent back in the response header, appears in the parent's log
// line for the call and goes to the enclave with the call's request, whose
// log lines about the call carry it too.
const RequestIDHeader = "x-request-id"

// newRequestID returns 16 random hex digits. A request id names a call in
// logs; it is not a secret, so the runtime's fast per-thread generator
// (math/rand/v2, seeded by the OS) serves instead of a getrandom call.
func newRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// UnaryInterceptor assigns the request id, counts the call in m (which may
// be nil), logs one line per call with its method, code and duration, and
// turns a stray non-status error into Internal. Request and response bodies
// are never logged; for Sign they are opaque relayed bytes (see Register),
// so an interceptor must not expect proto messages.
func UnaryInterceptor(log *slog.Logger, m *Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		id := ""
		// ValueFromIncomingContext reads the one key without copying the
		// whole metadata, as FromIncomingContext does.
		if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 && link.ValidRequestID(v[0]) {
			id = v[0]
		}
		if id == "" {
			id = newRequestID()
		}
		// The link sends the id with the call's request to the enclave,
		// whose log lines about the call then carry it.
		ctx = link.WithRequestID(ctx, id)
		_ = grpc.SetHeader(ctx, metadata.MD{RequestIDHeader: []string{id}})

		resp, err := handler(ctx, req)
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				log.ErrorContext(ctx, "non-status error", "request_id", id, "method", info.FullMethod, "err", err)
				err = status.Error(codes.Internal, "internal error")
			}
		}
		code := status.Code(err)
		m.observe(info.FullMethod, code, time.Since(start))
		// Successful calls are logged at debug level: at tens of thousands of
		// signatures a second an access line per call would cost more CPU
		// than the proxy itself. Failures are always logged.
		level := slog.LevelInfo
		switch code {
		case codes.OK:
			level = slog.LevelDebug
		case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition, codes.Canceled:
		case codes.Internal, codes.Unknown, codes.DataLoss:
			level = slog.LevelError
		default:
			level = slog.LevelWarn
		}
		if !log.Enabled(ctx, level) {
			return resp, err
		}
		attrs := []any{"request_id", id, "method", info.FullMethod, "code", code.String(), "duration", time.Since(start)}
		if err != nil {
			attrs = append(attrs, "message", status.Convert(err).Message())
		}
		log.Log(ctx, level, "rpc", attrs...)
		return resp, err
	}
}
