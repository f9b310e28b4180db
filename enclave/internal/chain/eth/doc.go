// Package eth decodes, checks, hashes and signs Ethereum payloads inside the
// enclave: transactions (legacy EIP-155, EIP-2930 and EIP-1559), EIP-191
// personal messages and EIP-712 typed data (eth_signTypedData_v4).
//
// It runs inside the enclave on untrusted bytes. Every decoder is strict: RLP
// must be canonical, quantities exact, JSON free of duplicate keys, and every
// input is bounded in size and nesting. What was signed is described in an
// [signerv1.EthSummary] so that a policy can judge it.
//
// Errors for malformed input wrap [sign.ErrInvalidPayload]; their text starts
// with the request field (for example "eth_transaction.fields.chain_id: ...")
// and names the problem. They never carry key material. Each Sign function
// signs through the [sign.DigestSigner] it is given: the secp256k1 scheme of
// package sign, or the enclave's combined one, which signs concurrent calls
// in batches (same signatures, less CPU). This package keeps no keys and
// does not zeroize the caller's private key.
//
// Besides the standard library it uses only golang.org/x/crypto/sha3
// (Keccak-256), the decred secp256k1 package (already used by package sign,
// here to validate public keys), package sign and the API types. It does not
// import go-ethereum; the tests use go-ethereum as an independent check.
package eth
