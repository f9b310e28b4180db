package server

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

// checkAttestationNonce checks an optional attestation_nonce field.
func checkAttestationNonce(nonce []byte) error {
	if len(nonce) > MaxNonce {
		return invalid("attestation_nonce", "must be at most %d bytes, got %d", MaxNonce, len(nonce))
	}
	return nil
}

// proveKey signs the statement of k with the identity key and attaches doc,
// an attestation document over the caller's nonce (or nil).
func (s *Server) proveKey(k *signerv1.Key, doc []byte) (*signerv1.KeyProof, error) {
	st, err := deterministic.Marshal(&signerv1.KeyStatement{
		Version:   signerv1.KeyStatementVersion,
		KeyId:     k.GetKeyId(),
		Algorithm: k.GetAlgorithm(),
		PublicKey: k.GetPublicKey(),
		Addresses: k.GetAddresses(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode key statement: %w", err)
	}
	return &signerv1.KeyProof{
		Statement:           st,
		Signature:           ed25519.Sign(s.cfg.IdentityKey, signerv1.KeyProofMessage(st)),
		IdentityPublicKey:   s.cfg.Identity.GetIdentityPublicKey(),
		AttestationDocument: doc,
	}, nil
}

// proofDocument makes the attestation document for proofs when the caller
// sent a nonce, and nil otherwise.
func (s *Server) proofDocument(ctx context.Context, nonce []byte) ([]byte, error) {
	if len(nonce) == 0 {
		return nil, nil
	}
	return s.document(ctx, nonce)
}
