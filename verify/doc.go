// Package verify lets clients of nitrosigner check that they talk to a
// genuine, expected enclave before trusting its keys.
//
// It wraps the project's single attestation verifier (internal/attest,
// over github.com/hf/nitrite) and adds what a client needs around it:
// fresh nonces ([NewNonce]), expected-PCR files ([LoadPCRs]), identity
// binding ([Result.BindIdentity]) and a one-call check of a live server
// ([Fetch]).
//
// # Trust
//
// Documents are verified against the AWS Nitro Enclaves Root G1, embedded
// and pinned by the SHA-256 of its DER encoding ([AWSRootSHA256]), unless
// [Options.Roots] names other roots. Pass another root only for simulated
// enclaves (the NSM simulator's root, see [LoadRoots]): anyone holding its
// key can mint documents with arbitrary PCRs. [Result.RootSHA256] reports
// which root anchored the chain.
//
// A verified document proves that an enclave with the document's PCRs
// produced it. It proves which enclave the caller talks to only together
// with the caller's expectations: pin PCRs ([Options.PCRs], at least PCR0,
// or PCR8 for signed images), refuse debug-mode enclaves (the default) and
// use a fresh nonce ([Fetch] does) so an old document cannot be replayed.
//
// # Two steps: document, then identity
//
// [Verify] checks a document alone: signature and chain, validity at
// [Options.Now], freshness ([Options.MaxAge]), nonce, PCRs and debug mode.
// It works on any Nitro attestation document, including real AWS documents
// produced by other software, whose user_data is not a nitrosigner
// identity.
//
// [Result.BindIdentity] is the separate, nitrosigner-specific step: it
// decodes user_data as a deterministically encoded
// nitrosigner.v1.EnclaveIdentity and checks that the document's public_key
// (the enclave's RSA key that KMS encrypts to) hashes to the identity's
// kms_public_key_sha256. Only then are the identity's keys the attested
// enclave's. [Fetch] always performs both steps and also requires the
// identity the server sent alongside the document to be the bound one.
//
// # Keys: is this address the enclave's?
//
// A client that pays to a key's address must know that the parent, which
// relays every answer and is not trusted, did not swap the key's public key
// or addresses for its own. The enclave signs a statement of each key it
// creates or describes (key id, algorithm, public key, addresses) with its
// identity key, and can attach an attestation document over the client's
// nonce from the same enclave. [FetchKey] asks for a key that way and checks
// everything ([AttestedKeyProof]); [KeyProof] checks a proof against an
// identity verified earlier. Failures wrap [ErrKeyProof].
//
// # Errors
//
// Verification failures wrap one of [ErrMalformed], [ErrUntrusted],
// [ErrBadSignature], [ErrStale], [ErrDebugMode], [ErrPCRMismatch],
// [ErrNonceMismatch] or [ErrIdentity]; a failed request in [Fetch] wraps
// [ErrRequest] and the gRPC error. Messages never quote the document's
// optional fields.
package verify
