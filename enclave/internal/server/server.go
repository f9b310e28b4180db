// Package server answers the parent-to-enclave API (proto
// nitrosigner.enclave.v1) inside the enclave.
//
// Every request comes from the untrusted parent and is validated here before
// any work. Status codes are chosen in one place, [toStatus]; client-visible
// messages name the offending field and never carry key material, while the
// wrapped internal error goes only to the enclave's own log.
//
// Chain payloads (Ethereum, Bitcoin, Solana) are bounded in size here, need a
// key of their chain's algorithm, and are decoded, checked and signed by the
// chain packages under enclave/internal/chain. Each chain signature is logged
// at Info with a summary of what was signed (never the payload, the
// signature or key material); raw digest and message signatures, the hot
// path, log at Debug only.
package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring"
	"github.com/nitrosigner/nitrosigner/enclave/internal/kms"
	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Limits on request fields. Requests beyond them are refused before any
// cryptographic work.
const (
	MaxBatch       = 256
	MaxPageSize    = 1000
	DefaultPage    = 100
	MaxLabels      = 16
	MaxLabelLen    = 128
	MaxNonce       = 512
	MaxMessageSize = sign.MaxMessageSize
	// MaxListBytes bounds the encoded keys of one ListKeys page, so that a
	// page of keys with many long labels still fits a link frame; a page
	// ends early (with a next_page_token) when it would exceed it.
	MaxListBytes = 1 << 20
	maxKeyIDLen  = 128
)

// Keyring is the part of the keyring the server uses.
type Keyring interface {
	Create(ctx context.Context, alg signerv1.Algorithm, labels map[string]string) (*keyring.Created, error)
	Load(ctx context.Context, items []keyring.Blobs) []error
	Use(ctx context.Context, id string, withPub bool, fn func(sc sign.Scheme, priv, pub []byte) error) (signerv1.Algorithm, error)
	Describe(ctx context.Context, b keyring.Blobs) (*keyring.Info, error)
	SetState(ctx context.Context, id string, state signerv1.KeyState, b keyring.Blobs) (*keyring.Resealed, error)
	Rotate(ctx context.Context, id, kmsKeyARN string, b keyring.Blobs) (*keyring.Resealed, error)
	Evict(id string, deleted bool)
	Supersede(id string, gen uint64) bool
	EvictAll() int
	Len() int
	KMSCalls() uint64
	KEKs() int
}

// Credentials receives the AWS credentials the parent pushes.
type Credentials interface {
	SetCredentials(accessKeyID, secretAccessKey, sessionToken string, expires time.Time) error
}

// Attester produces NSM attestation documents. Nil arguments are omitted
// from the document.
type Attester interface {
	Attest(ctx context.Context, nonce, userData, publicKey []byte) ([]byte, error)
}

// Config configures a [Server].
type Config struct {
	// Keyring holds the keys. Required.
	Keyring Keyring
	// Credentials receives pushed AWS credentials. Required.
	Credentials Credentials
	// Attester makes attestation documents. Required.
	Attester Attester
	// Identity is bound into every attestation document's user_data. Required.
	Identity *signerv1.EnclaveIdentity
	// IdentityKey is the private half of Identity.IdentityPublicKey; it
	// signs key proofs. Required.
	IdentityKey ed25519.PrivateKey
	// KMSPublicKey is the DER SubjectPublicKeyInfo of the enclave's RSA key,
	// placed in every attestation document's public_key. Required.
	KMSPublicKey []byte
	// Version is reported by Ping.
	Version string
	// Logger receives operator logs; default slog.Default().
	Logger *slog.Logger
	// NoBatching turns off the combining of concurrent secp256k1 ECDSA
	// signatures (raw digests, Ethereum payloads, Bitcoin ECDSA) into
	// batches (see [sign.Combiner]); for measurements.
	NoBatching bool
	// Pause, if not nil, runs between the signatures of a batch (see
	// [sign.NewCombiner]): a yield of the CPU where the enclave shares
	// its CPUs with the parent and the clients.
	Pause func()
}

// Server handles enclave API calls. It is safe for concurrent use.
type Server struct {
	cfg      Config
	userData []byte
	log      *slog.Logger
	// frozen is the signing switch: nil lets signing run, a state stops it.
	frozen atomic.Pointer[signerv1.FreezeState]
	// changeMu orders ApplyKeyChanges calls; changeSeq is the change-log
	// position applied.
	changeMu  sync.Mutex
	changeSeq uint64
	// batched holds, per algorithm that can batch, the scheme whose
	// SignDigest combines concurrent calls (one batch per core at a time);
	// combiners are their combiners, for statistics.
	batched   map[signerv1.Algorithm]sign.Scheme
	combiners []*sign.Combiner
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Keyring == nil:
		return nil, errors.New("server: Keyring is required")
	case cfg.Credentials == nil:
		return nil, errors.New("server: Credentials is required")
	case cfg.Attester == nil:
		return nil, errors.New("server: Attester is required")
	case cfg.Identity == nil:
		return nil, errors.New("server: Identity is required")
	case len(cfg.IdentityKey) != ed25519.PrivateKeySize ||
		!bytes.Equal(cfg.IdentityKey.Public().(ed25519.PublicKey), cfg.Identity.GetIdentityPublicKey()):
		return nil, errors.New("server: IdentityKey must be the private key of Identity.IdentityPublicKey")
	case len(cfg.KMSPublicKey) == 0:
		return nil, errors.New("server: KMSPublicKey is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ud, err := deterministic.Marshal(cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("server: encode identity: %w", err)
	}
	srv := &Server{cfg: cfg, userData: ud, log: cfg.Logger, batched: map[signerv1.Algorithm]sign.Scheme{}}
	if !cfg.NoBatching {
		for _, alg := range []signerv1.Algorithm{signerv1.Algorithm_ALGORITHM_SECP256K1} {
			if sc, ok := sign.Lookup(alg); ok {
				b, c := sign.Combined(sc, runtime.GOMAXPROCS(0), cfg.Pause)
				if c != nil {
					srv.batched[alg] = b
					srv.combiners = append(srv.combiners, c)
				}
			}
		}
	}
	return srv, nil
}

var marshal = proto.MarshalOptions{}

// Handle decodes one request for method, runs it and appends the encoded
// response to resp. Its signature matches the link's handler. Errors are gRPC
// status errors.
func (s *Server) Handle(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
	var out proto.Message
	var err error
	switch enclavev1.Method(method) {
	case enclavev1.Method_METHOD_PING:
		out = &enclavev1.PingResponse{Version: s.cfg.Version}
	case enclavev1.Method_METHOD_GET_STATS:
		out, err = s.stats()
	case enclavev1.Method_METHOD_SIGN:
		in := new(enclavev1.SignRequest)
		if err = unmarshal(req, in); err == nil {
			var r *signerv1.SignResponse
			r, err = s.sign(ctx, in.GetRequest())
			out = &enclavev1.SignResponse{Response: r}
		}
	case enclavev1.Method_METHOD_SIGN_BATCH:
		in := new(enclavev1.SignBatchRequest)
		if err = unmarshal(req, in); err == nil {
			var r *signerv1.SignBatchResponse
			r, err = s.signBatch(ctx, in.GetRequest())
			out = &enclavev1.SignBatchResponse{Response: r}
		}
	case enclavev1.Method_METHOD_CREATE_KEY:
		in := new(enclavev1.CreateKeyRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.createKey(ctx, in.GetRequest())
		}
	case enclavev1.Method_METHOD_LOAD_KEYS:
		in := new(enclavev1.LoadKeysRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.loadKeys(ctx, in)
		}
	case enclavev1.Method_METHOD_DESCRIBE_KEYS:
		in := new(enclavev1.DescribeKeysRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.describeKeys(ctx, in)
		}
	case enclavev1.Method_METHOD_SET_KEY_STATE:
		in := new(enclavev1.SetKeyStateRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.setKeyState(ctx, in)
		}
	case enclavev1.Method_METHOD_ROTATE_KEY:
		in := new(enclavev1.RotateKeyRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.rotateKey(ctx, in)
		}
	case enclavev1.Method_METHOD_EVICT_KEY:
		in := new(enclavev1.EvictKeyRequest)
		if err = unmarshal(req, in); err == nil {
			if err = validKeyID(in.GetKeyId()); err == nil {
				s.cfg.Keyring.Evict(in.GetKeyId(), in.GetDeleted())
				out = &enclavev1.EvictKeyResponse{}
			}
		}
	case enclavev1.Method_METHOD_SET_CREDENTIALS:
		in := new(enclavev1.SetCredentialsRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.setCredentials(in)
		}
	case enclavev1.Method_METHOD_APPLY_KEY_CHANGES:
		in := new(enclavev1.ApplyKeyChangesRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.applyKeyChanges(ctx, in)
		}
	case enclavev1.Method_METHOD_SET_FREEZE:
		in := new(enclavev1.SetFreezeRequest)
		if err = unmarshal(req, in); err == nil {
			out, err = s.setFreeze(ctx, in.GetState())
		}
	case enclavev1.Method_METHOD_GET_ATTESTATION:
		in := new(enclavev1.GetAttestationRequest)
		if err = unmarshal(req, in); err == nil {
			var r *signerv1.GetAttestationResponse
			r, err = s.attest(ctx, in.GetNonce())
			out = &enclavev1.GetAttestationResponse{Response: r}
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "unknown method %d", method)
	}
	if err != nil {
		return nil, s.toStatus(ctx, enclavev1.Method(method), err)
	}
	return marshal.MarshalAppend(resp, out)
}

func unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
	}
	return nil
}

// invalid returns an InvalidArgument error whose message starts with the
// field's name.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, field+": "+format, args...)
}

// toStatus picks the status code for err. Status errors pass unchanged;
// sentinels map to codes with messages that say what happened (none of them
// carries key material): a payload a chain package refused is
// InvalidArgument with the package's text, which names the field, and a PSBT
// with nothing for the key to sign is FailedPrecondition. Anything else,
// including a key a signer refused, is logged and becomes Internal without
// its text.
func (s *Server) toStatus(ctx context.Context, m enclavev1.Method, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, keyring.ErrNotLoaded):
		return status.Error(codes.FailedPrecondition, enclavev1.KeyNotLoaded)
	case errors.Is(err, keyring.ErrDisabled):
		return status.Error(codes.FailedPrecondition, "key is disabled")
	case errors.Is(err, keyring.ErrDeleted):
		return status.Error(codes.NotFound, "key not found (deleted)")
	case errors.Is(err, keyring.ErrKEKMissing):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, keyring.ErrUnknownAlgorithm):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, keyring.ErrKMSKeyNotAllowed):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, kms.ErrAttestationRefused):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, kms.ErrKeyUnusable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, keyring.ErrStale):
		return status.Error(codes.Aborted, err.Error()+"; read the key's blob again")
	case errors.Is(err, keyring.ErrMismatch), errors.Is(err, seal.ErrOpen), errors.Is(err, seal.ErrMalformed),
		errors.Is(err, seal.ErrUnsupportedVersion), errors.Is(err, kms.ErrInvalidCiphertext):
		s.log.WarnContext(ctx, "sealed blob refused", "method", m.String(), "err", err)
		return status.Error(codes.DataLoss, "sealed key refused: "+err.Error())
	case errors.Is(err, kms.ErrNoCredentials), errors.Is(err, kms.ErrUnavailable), errors.Is(err, keyring.ErrClosed):
		s.log.WarnContext(ctx, "KMS unavailable", "method", m.String(), "err", err)
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, btc.ErrNoInputForKey):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, sign.ErrInvalidPayload):
		// Chain packages name the field and the problem; keep their text.
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, sign.ErrInvalidKey):
		// Keys come authenticated from the keyring: this is a bug.
		s.log.ErrorContext(ctx, "signer refused a key", "method", m.String(), "err", err)
		return status.Error(codes.Internal, "internal error")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded in enclave")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	}
	s.log.ErrorContext(ctx, "request failed", "method", m.String(), "err", err)
	return status.Error(codes.Internal, "internal error")
}

func validKeyID(id string) error {
	switch {
	case id == "":
		return invalid("key_id", "required")
	case len(id) > maxKeyIDLen:
		return invalid("key_id", "longer than %d bytes", maxKeyIDLen)
	}
	return nil
}

// sign signs one payload. Chain payloads need a key of their chain's
// algorithm and are decoded and checked by the chain packages; their errors
// reach [Server.toStatus] unchanged.
func (s *Server) sign(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	if f := s.frozen.Load(); f != nil {
		return nil, enclavev1.FrozenError(f)
	}
	if err := validKeyID(r.GetKeyId()); err != nil {
		return nil, err
	}
	if err := s.allFieldsKnown(r); err != nil {
		return nil, err
	}
	var j job
	switch p := r.GetPayload().(type) {
	case *signerv1.SignRequest_Digest:
		if len(p.Digest) != sign.DigestSize {
			return nil, invalid("digest", "must be %d bytes, got %d", sign.DigestSize, len(p.Digest))
		}
		j = job{field: "digest", sign: func(sc sign.Scheme, priv, _ []byte) (*signerv1.SignResponse, error) {
			sig, err := sc.SignDigest(priv, p.Digest)
			if errors.Is(err, sign.ErrUnsupported) {
				return nil, invalid("digest", "%s keys do not sign digests; send the message field", sc.Name())
			}
			return &signerv1.SignResponse{Signature: sig}, err
		}}
	case *signerv1.SignRequest_Message:
		switch {
		case len(p.Message) == 0:
			return nil, invalid("message", "must not be empty")
		case len(p.Message) > MaxMessageSize:
			return nil, invalid("message", "must be at most %d bytes, got %d", MaxMessageSize, len(p.Message))
		}
		j = job{field: "message", sign: func(sc sign.Scheme, priv, _ []byte) (*signerv1.SignResponse, error) {
			sig, err := sc.SignMessage(priv, p.Message)
			if errors.Is(err, sign.ErrUnsupported) {
				return nil, invalid("message", "%s keys sign 32-byte digests; send the digest field", sc.Name())
			}
			return &signerv1.SignResponse{Signature: sig}, err
		}}
	default:
		var err error
		if j, err = chainJob(r); err != nil {
			return nil, err
		}
	}
	var resp *signerv1.SignResponse
	alg, err := s.cfg.Keyring.Use(ctx, r.GetKeyId(), j.pub, func(sc sign.Scheme, priv, pub []byte) (err error) {
		if b, ok := s.batched[sc.Algorithm()]; ok {
			sc = b // digests, Ethereum payloads and Bitcoin ECDSA join batches
		}
		resp, err = j.sign(sc, priv, pub)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.KeyId, resp.Algorithm = r.GetKeyId(), alg
	s.logSigned(ctx, j.field, resp)
	return resp, nil
}

// logSigned records a signature. Raw digests and messages are the hot path
// and log at Debug; chain payloads log at Info with what was signed.
func (s *Server) logSigned(ctx context.Context, field string, resp *signerv1.SignResponse) {
	if resp.GetSummary() == nil {
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.DebugContext(ctx, "signed", "key_id", resp.GetKeyId(), "payload", field)
		}
		return
	}
	args := append([]any{"key_id", resp.GetKeyId(), "payload", field}, summaryAttrs(field, resp)...)
	s.log.InfoContext(ctx, "signed", args...)
}

func (s *Server) signBatch(ctx context.Context, r *signerv1.SignBatchRequest) (*signerv1.SignBatchResponse, error) {
	if f := s.frozen.Load(); f != nil {
		return nil, enclavev1.FrozenError(f)
	}
	n := len(r.GetRequests())
	if n == 0 || n > MaxBatch {
		return nil, invalid("requests", "must hold 1..%d items, got %d", MaxBatch, n)
	}
	results := make([]*signerv1.SignResult, n)
	one := func(i int) {
		resp, err := s.sign(ctx, r.GetRequests()[i])
		if err != nil {
			st, _ := status.FromError(s.toStatus(ctx, enclavev1.Method_METHOD_SIGN_BATCH, err))
			results[i] = &signerv1.SignResult{Result: &signerv1.SignResult_Error{
				Error: &signerv1.Status{Code: int32(st.Code()), Message: st.Message()}}}
			return
		}
		results[i] = &signerv1.SignResult{Result: &signerv1.SignResult_Response{Response: resp}}
	}
	// Spread the batch over the cores: one signature is tens of
	// microseconds, far more than a goroutine costs. With combining, more
	// goroutines than cores let digest signatures meet in batches.
	workers := runtime.GOMAXPROCS(0)
	if len(s.batched) > 0 {
		workers *= sign.MaxDigestBatch
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				one(i)
			}
		})
	}
	wg.Wait()
	return &signerv1.SignBatchResponse{Results: results}, nil
}

func (s *Server) attest(ctx context.Context, nonce []byte) (*signerv1.GetAttestationResponse, error) {
	if len(nonce) == 0 || len(nonce) > MaxNonce {
		return nil, invalid("nonce", "must be 1..%d bytes, got %d", MaxNonce, len(nonce))
	}
	doc, err := s.document(ctx, nonce)
	if err != nil {
		return nil, err
	}
	return &signerv1.GetAttestationResponse{Document: doc, Identity: s.cfg.Identity}, nil
}

// document makes an attestation document over nonce that binds the
// enclave's identity.
func (s *Server) document(ctx context.Context, nonce []byte) ([]byte, error) {
	doc, err := s.cfg.Attester.Attest(ctx, nonce, s.userData, s.cfg.KMSPublicKey)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return doc, nil
}

// stats reports the enclave process's own resource use.
func (s *Server) stats() (*enclavev1.GetStatsResponse, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil, fmt.Errorf("getrusage: %w", err)
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	var heap uint64
	if sample[0].Value.Kind() == metrics.KindUint64 {
		heap = sample[0].Value.Uint64()
	}
	var batches, batched uint64
	for _, c := range s.combiners {
		b, n := c.Stats()
		batches, batched = batches+b, batched+n
	}
	return &enclavev1.GetStatsResponse{
		BatchedSignatures: batched,
		SignBatches:       batches,
		UserCpuMicros:     uint64(ru.Utime.Nano() / 1e3),
		SystemCpuMicros:   uint64(ru.Stime.Nano() / 1e3),
		Keys:              uint64(s.cfg.Keyring.Len()),
		KmsCalls:          s.cfg.Keyring.KMSCalls(),
		Keks:              uint64(s.cfg.Keyring.KEKs()),
		HeapBytes:         heap,
		Goroutines:        uint64(runtime.NumGoroutine()),
		Version:           s.cfg.Version,
	}, nil
}
