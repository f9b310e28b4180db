package server

import (
	"context"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring"
	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Limits on lifecycle requests.
const (
	// MaxLoad bounds the keys of one LoadKeys or DescribeKeys call.
	MaxLoad = 4096
	// MaxBlob bounds one sealed blob.
	MaxBlob = seal.MaxBlobSize
)

func (s *Server) createKey(ctx context.Context, r *signerv1.CreateKeyRequest) (*enclavev1.CreateKeyResponse, error) {
	if _, ok := sign.Lookup(r.GetAlgorithm()); !ok {
		return nil, invalid("algorithm", "must be ALGORITHM_SECP256K1, ALGORITHM_ED25519 or ALGORITHM_P256, got %v", r.GetAlgorithm())
	}
	if len(r.GetLabels()) > MaxLabels {
		return nil, invalid("labels", "at most %d labels, got %d", MaxLabels, len(r.GetLabels()))
	}
	for k, v := range r.GetLabels() {
		if k == "" || len(k) > MaxLabelLen || len(v) > MaxLabelLen {
			return nil, invalid("labels", "keys must be 1..%d bytes and values at most %d bytes", MaxLabelLen, MaxLabelLen)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, invalid("labels", "must be valid UTF-8")
		}
	}
	if err := checkAttestationNonce(r.GetAttestationNonce()); err != nil {
		return nil, err
	}
	// The document first: a key is not made for a call that cannot get
	// the proof it asked for.
	doc, err := s.proofDocument(ctx, r.GetAttestationNonce())
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.Keyring.Create(ctx, r.GetAlgorithm(), r.GetLabels())
	if err != nil {
		return nil, err
	}
	k := s.keyProto(ctx, &c.Info)
	proof, err := s.proveKey(k, doc)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key created", "key_id", c.Header.KeyId, "algorithm", c.Header.Algorithm.String(),
		"kek_id", c.Header.KekId)
	return &enclavev1.CreateKeyResponse{Key: k, SealedKey: c.SealedKey, SealedKek: c.SealedKEK, Proof: proof}, nil
}

// blobs checks one SealedBlobs item.
func blobs(field string, b *enclavev1.SealedBlobs) (keyring.Blobs, error) {
	switch {
	case b == nil || len(b.GetSealedKey()) == 0:
		return keyring.Blobs{}, invalid(field+".sealed_key", "required")
	case len(b.GetSealedKey()) > MaxBlob || len(b.GetSealedKek()) > MaxBlob:
		return keyring.Blobs{}, invalid(field, "blobs must be at most %d bytes", MaxBlob)
	}
	if b.GetKeyId() != "" {
		if err := validKeyID(b.GetKeyId()); err != nil {
			return keyring.Blobs{}, err
		}
	}
	return keyring.Blobs{KeyID: b.GetKeyId(), SealedKey: b.GetSealedKey(), SealedKEK: b.GetSealedKek()}, nil
}

func (s *Server) loadKeys(ctx context.Context, r *enclavev1.LoadKeysRequest) (*enclavev1.LoadKeysResponse, error) {
	n := len(r.GetKeys())
	if n == 0 || n > MaxLoad {
		return nil, invalid("keys", "must hold 1..%d items, got %d", MaxLoad, n)
	}
	items := make([]keyring.Blobs, n)
	for i, b := range r.GetKeys() {
		var err error
		if items[i], err = blobs("keys", b); err != nil {
			return nil, err
		}
		if items[i].KeyID == "" {
			return nil, invalid("keys.key_id", "required")
		}
	}
	errs := s.cfg.Keyring.Load(ctx, items)
	out := &enclavev1.LoadKeysResponse{Results: make([]*signerv1.Status, n)}
	for i, err := range errs {
		out.Results[i] = s.itemStatus(ctx, enclavev1.Method_METHOD_LOAD_KEYS, err)
	}
	return out, nil
}

// itemStatus is the per-item form of toStatus (code 0 for nil).
func (s *Server) itemStatus(ctx context.Context, m enclavev1.Method, err error) *signerv1.Status {
	if err == nil {
		return &signerv1.Status{}
	}
	st, _ := status.FromError(s.toStatus(ctx, m, err))
	return &signerv1.Status{Code: int32(st.Code()), Message: st.Message()}
}

func (s *Server) describeKeys(ctx context.Context, r *enclavev1.DescribeKeysRequest) (*enclavev1.DescribeKeysResponse, error) {
	n := len(r.GetKeys())
	if n == 0 || n > MaxLoad {
		return nil, invalid("keys", "must hold 1..%d items, got %d", MaxLoad, n)
	}
	if err := checkAttestationNonce(r.GetAttestationNonce()); err != nil {
		return nil, err
	}
	if len(r.GetAttestationNonce()) > 0 && !r.GetProve() {
		return nil, invalid("attestation_nonce", "needs prove")
	}
	items := make([]keyring.Blobs, n)
	for i, b := range r.GetKeys() {
		var err error
		if items[i], err = blobs("keys", b); err != nil {
			return nil, err
		}
	}
	var doc []byte
	if r.GetProve() {
		var err error
		if doc, err = s.proofDocument(ctx, r.GetAttestationNonce()); err != nil {
			return nil, err
		}
	}
	out := &enclavev1.DescribeKeysResponse{Keys: make([]*enclavev1.DescribedKey, n)}
	for i, item := range items {
		info, err := s.cfg.Keyring.Describe(ctx, item)
		if err != nil {
			out.Keys[i] = &enclavev1.DescribedKey{Error: s.itemStatus(ctx, enclavev1.Method_METHOD_DESCRIBE_KEYS, err)}
			continue
		}
		d := &enclavev1.DescribedKey{Key: s.keyProto(ctx, info)}
		if r.GetProve() {
			if d.Proof, err = s.proveKey(d.Key, doc); err != nil {
				return nil, err
			}
		}
		out.Keys[i] = d
	}
	return out, nil
}

func (s *Server) setKeyState(ctx context.Context, r *enclavev1.SetKeyStateRequest) (*enclavev1.SetKeyStateResponse, error) {
	if err := validKeyID(r.GetKeyId()); err != nil {
		return nil, err
	}
	switch r.GetState() {
	case signerv1.KeyState_KEY_STATE_ENABLED, signerv1.KeyState_KEY_STATE_DISABLED:
	default:
		return nil, invalid("state", "must be KEY_STATE_ENABLED or KEY_STATE_DISABLED, got %v", r.GetState())
	}
	b, err := blobs("current", r.GetCurrent())
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Keyring.SetState(ctx, r.GetKeyId(), r.GetState(), b)
	if err != nil {
		return nil, err
	}
	msg := "key state sealed"
	if res.Unchanged {
		msg = "key state unchanged"
	}
	s.log.InfoContext(ctx, msg, "key_id", r.GetKeyId(), "state", r.GetState().String(),
		"generation", res.Header.Generation)
	return &enclavev1.SetKeyStateResponse{Key: s.keyProto(ctx, &res.Info), SealedKey: res.SealedKey}, nil
}

func (s *Server) rotateKey(ctx context.Context, r *enclavev1.RotateKeyRequest) (*enclavev1.RotateKeyResponse, error) {
	if err := validKeyID(r.GetKeyId()); err != nil {
		return nil, err
	}
	if a := r.GetKmsKeyArn(); a != "" && !keyring.ValidKeyARN(a) {
		return nil, invalid("kms_key_arn", "must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
	}
	b, err := blobs("current", r.GetCurrent())
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Keyring.Rotate(ctx, r.GetKeyId(), r.GetKmsKeyArn(), b)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key rotated", "key_id", r.GetKeyId(), "kek_id", res.Header.KekId,
		"kms_key_arn", res.KMSKeyARN, "generation", res.Header.Generation)
	return &enclavev1.RotateKeyResponse{Key: s.keyProto(ctx, &res.Info), SealedKek: res.SealedKEK, SealedKey: res.SealedKey}, nil
}

func (s *Server) setCredentials(r *enclavev1.SetCredentialsRequest) (*enclavev1.SetCredentialsResponse, error) {
	switch {
	case r.GetAccessKeyId() == "" || len(r.GetAccessKeyId()) > 128:
		return nil, invalid("access_key_id", "required, at most 128 bytes")
	case r.GetSecretAccessKey() == "" || len(r.GetSecretAccessKey()) > 256:
		return nil, invalid("secret_access_key", "required, at most 256 bytes")
	case len(r.GetSessionToken()) > 8192:
		return nil, invalid("session_token", "at most 8192 bytes")
	case r.GetExpiresUnixMs() < 0:
		return nil, invalid("expires_unix_ms", "must not be negative")
	}
	var exp time.Time
	if r.GetExpiresUnixMs() > 0 {
		exp = time.UnixMilli(r.GetExpiresUnixMs())
	}
	if err := s.cfg.Credentials.SetCredentials(r.GetAccessKeyId(), r.GetSecretAccessKey(), r.GetSessionToken(), exp); err != nil {
		return nil, invalid("credentials", "%v", err)
	}
	return &enclavev1.SetCredentialsResponse{}, nil
}

// keyProto describes a key from its header. Addresses are derived here,
// inside the enclave, from the authenticated public key.
func (s *Server) keyProto(ctx context.Context, info *keyring.Info) *signerv1.Key {
	h := info.Header
	return &signerv1.Key{
		KeyId:           h.KeyId,
		Algorithm:       h.Algorithm,
		PublicKey:       h.PublicKey,
		State:           h.State,
		CreatedAtUnixMs: h.CreatedAtUnixMs,
		Labels:          h.Labels,
		Addresses:       s.addresses(ctx, h.KeyId, h.Algorithm, h.PublicKey),
		Sealing: &signerv1.Sealing{
			KmsKeyArn: info.KMSKeyARN, KekId: h.KekId, Generation: h.Generation, SealedAtUnixMs: h.SealedAtUnixMs,
		},
	}
}

// addresses derives the chain addresses of a public key: Ethereum and
// Bitcoin for secp256k1, Solana for ed25519, none for P-256. The key comes
// authenticated from its sealed header, so a failure is a bug: it is logged
// and the key is described without addresses rather than not at all.
func (s *Server) addresses(ctx context.Context, keyID string, alg signerv1.Algorithm, pub []byte) *signerv1.Addresses {
	var a *signerv1.Addresses
	var err error
	switch alg {
	case signerv1.Algorithm_ALGORITHM_SECP256K1:
		if a, err = btc.Addresses(pub); err == nil {
			a.Ethereum, err = eth.Address(pub)
		}
	case signerv1.Algorithm_ALGORITHM_ED25519:
		a = new(signerv1.Addresses)
		a.Solana, err = sol.Address(pub)
	default:
		return nil
	}
	if err != nil {
		s.log.ErrorContext(ctx, "cannot derive addresses", "key_id", keyID, "algorithm", alg.String(), "err", err)
		return nil
	}
	return a
}
