// Package proxy is the parent's client-facing SignerService. It holds no
// secrets and makes no signing decisions: every call is forwarded to the
// enclave over the link with a deadline, and the enclave's status code
// reaches the client unchanged. A link that cannot reach the enclave yields
// codes.Unavailable.
package proxy

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Caller sends one request to the enclave. It is satisfied by
// *link.Client; every error it returns is a gRPC status error.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp proto.Message) error
	// CallRaw sends an encoded request; resp gets the encoded answer and
	// must not retain it.
	CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error
}

// Size limits enforced by the parent before forwarding, so that oversized
// requests cost the enclave nothing. They mirror the enclave's own checks,
// which remain authoritative.
const (
	MaxBatch       = 256
	MaxNonce       = 512
	MaxMessageSize = 64 << 10
)

// Config configures a [Service].
type Config struct {
	// Enclave is the link to the enclave. Required.
	Enclave Caller
	// CallTimeout bounds every forwarded call, also when the client set a
	// longer deadline or none. Default 10 s.
	CallTimeout time.Duration
}

// Service implements signerv1.SignerServiceServer by forwarding to the
// enclave. It is safe for concurrent use.
type Service struct {
	signerv1.UnimplementedSignerServiceServer
	enclave Caller
	timeout time.Duration
}

var _ signerv1.SignerServiceServer = (*Service)(nil)

// New returns a service for cfg.
func New(cfg Config) *Service {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	return &Service{enclave: cfg.Enclave, timeout: cfg.CallTimeout}
}

func (s *Service) call(ctx context.Context, m enclavev1.Method, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.enclave.Call(ctx, uint16(m), req, resp)
}

// CreateKey implements signerv1.SignerServiceServer.
func (s *Service) CreateKey(ctx context.Context, r *signerv1.CreateKeyRequest) (*signerv1.CreateKeyResponse, error) {
	var out enclavev1.CreateKeyResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	return &signerv1.CreateKeyResponse{Key: out.GetKey()}, nil
}

// GetKey implements signerv1.SignerServiceServer.
func (s *Service) GetKey(ctx context.Context, r *signerv1.GetKeyRequest) (*signerv1.GetKeyResponse, error) {
	var out enclavev1.GetKeyResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_GET_KEY, &enclavev1.GetKeyRequest{KeyId: r.GetKeyId()}, &out); err != nil {
		return nil, err
	}
	return &signerv1.GetKeyResponse{Key: out.GetKey()}, nil
}

// ListKeys implements signerv1.SignerServiceServer.
func (s *Service) ListKeys(ctx context.Context, r *signerv1.ListKeysRequest) (*signerv1.ListKeysResponse, error) {
	var out enclavev1.ListKeysResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_LIST_KEYS, &enclavev1.ListKeysRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	return out.GetResponse(), nil
}

// Sign implements signerv1.SignerServiceServer.

// SignBatch implements signerv1.SignerServiceServer.
func (s *Service) SignBatch(ctx context.Context, r *signerv1.SignBatchRequest) (*signerv1.SignBatchResponse, error) {
	if n := len(r.GetRequests()); n == 0 || n > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "requests: must hold 1..%d items, got %d", MaxBatch, n)
	}
	var out enclavev1.SignBatchResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	return out.GetResponse(), nil
}

// GetAttestation implements signerv1.SignerServiceServer.
func (s *Service) GetAttestation(ctx context.Context, r *signerv1.GetAttestationRequest) (*signerv1.GetAttestationResponse, error) {
	if n := len(r.GetNonce()); n == 0 || n > MaxNonce {
		return nil, status.Errorf(codes.InvalidArgument, "nonce: must be 1..%d bytes, got %d", MaxNonce, n)
	}
	var out enclavev1.GetAttestationResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: r.GetNonce()}, &out); err != nil {
		return nil, err
	}
	return out.GetResponse(), nil
}

// Ping checks that the enclave answers.
func (s *Service) Ping(ctx context.Context) error {
	return s.call(ctx, enclavev1.Method_METHOD_PING, &enclavev1.PingRequest{}, &enclavev1.PingResponse{})
}
