// Package attest verifies AWS Nitro Enclaves attestation documents. It is the
// one verification path of the project: the KMS simulator, the CLI, clients
// and tests all call [Verify], for real and simulated documents alike.
//
// # Trust
//
// Verify trusts only the roots it is given, and by default only the AWS Nitro
// Enclaves Root G1 embedded in this package and pinned by its DER SHA-256
// ([AWSRootSHA256]). A simulated NSM signs with its own root, which callers
// pass in [Options.Roots]; the same code then checks its documents.
//
// The package runs on both sides of the trust boundary (inside the enclave
// and on clients) and does no I/O.
//
// # What is checked
//
// Cryptographic verification is delegated to github.com/hf/nitrite, wrapped
// to close its gaps: it returns a result together with an error, panics on
// certificates with keys on unexpected curves, anchors on a certificate pool
// without looking at the document's own copy of the root, treats the rest of
// the cabundle as an unordered pool (extra, expired or reordered entries
// pass), and checks no policy. Verify therefore runs strict structural
// pre-checks before nitrite, requires the document's cabundle[0] to be
// byte-identical to the trusted root and the cabundle to be the ordered
// chain down to the leaf's issuer (each certificate issued and signed by
// the one before it, none repeated, all valid at the verification time),
// recovers from panics, and applies the caller's policy: expected PCRs,
// nonce, freshness and refusal of debug-mode enclaves.
//
// # Errors
//
// Every failure wraps one of the sentinel errors ([ErrMalformed],
// [ErrUntrusted], [ErrBadSignature], [ErrStale], [ErrDebugMode],
// [ErrPCRMismatch], [ErrNonceMismatch]). Messages may quote the document's
// structure but never its optional fields, so they are safe to log.
package attest
