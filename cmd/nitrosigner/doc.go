// Command nitrosigner is the client of a nitrosigner deployment. It talks
// gRPC (nitrosigner.v1.SignerService) to the parent proxy, the only door to
// the enclave that holds the keys.
//
// # Usage
//
//	nitrosigner [global flags] keys create --alg secp256k1|ed25519|p256 [--label k=v ...]
//	nitrosigner [global flags] keys list [--page-size N]
//	nitrosigner [global flags] keys get ID
//	nitrosigner [global flags] keys disable|enable ID
//	nitrosigner [global flags] keys rotate ID [--kms-key ARN]
//	nitrosigner [global flags] keys delete ID --yes
//	nitrosigner [global flags] sign --key ID (--digest HEX | --message HEX | --message-file PATH)
//	nitrosigner [global flags] sign eth-tx|eth-message|eth-typed-data|psbt|solana --key ID --file PATH
//	nitrosigner [global flags] sign btc-sighash --key ID --sighash HEX --scheme ecdsa|schnorr
//	nitrosigner [global flags] attest [--nonce HEX] [--verify] [--root PEM_FILE] [--pcrs FILE] [--allow-debug] [--max-age D]
//	nitrosigner attest --doc FILE --verify [--nonce HEX] [--at TIME] [--identity] ...
//	nitrosigner eif describe FILE [--pcrs FILE] | eif pcr --role ARN|--instance-id ID|--cert PEM | eif build ...
//	nitrosigner kms-policy --role-arn ARN --admin-arn ARN --pcrs FILE [--pcrs FILE] [--pcr N=HEX ...] [--no-pcr3] [--out FILE]
//
// Global flags come before the command:
//
//	--addr ADDR             host:port, tcp://host:port or unix:///path (default 127.0.0.1:50051)
//	--json                  print one JSON object instead of text
//	--timeout D             deadline for the whole command (default 15s)
//	--tls-ca FILE           CA certificates (PEM) that verify the server; enables TLS
//	--tls-cert, --tls-key   client certificate and key (PEM) for mutual TLS
//	--tls-server-name NAME  name expected in the server certificate
//
// Without --tls-ca the connection is plaintext, which the server accepts only
// over loopback and unix sockets. Every flag can be written with one or two
// dashes. HEX values may carry a 0x prefix.
//
// # Attestation
//
// attest asks the enclave for a fresh attestation document over a nonce (32
// random bytes unless --nonce is given). Without --verify the document is
// printed but not interpreted; only its bytes (with --json) and the identity
// the server reports, unverified, are shown. With --verify the document is
// checked by the importable verifier (package verify) against the AWS Nitro
// root, or the root in --root (simulated enclaves only), and then:
//
//   - its nonce must be the one sent;
//   - its PCRs must equal those in --pcrs, a JSON file in nitro-cli's
//     Measurements shape ({"PCR0": "hex", ...}, optionally wrapped in
//     {"Measurements": {...}}) or keyed by bare index ({"0": "hex"});
//   - it must not come from a debug-mode enclave unless --allow-debug;
//   - its user_data, decoded as an EnclaveIdentity, must equal the identity
//     in the response, and the document's public_key must hash to the
//     identity's kms_public_key_sha256.
//
// Any failure exits with status 1 and an "Unauthenticated: attestation
// verification failed" message (the enclave did not prove who it is).
//
// # Output
//
// Text output is aligned "name: value" lines, or a table for keys list. With
// --json exactly one JSON object is written to stdout, its field names as in
// the .proto file, bytes as lowercase hex without 0x and enums as short
// lowercase names ("secp256k1", "enabled"). Nothing is written to stdout when
// a command fails.
//
// # Exit status
//
// 0 on success (and for --help), 1 when the server, a verification or a
// local step (a file that cannot be written) fails, 2 for usage errors,
// which are detected before the server is contacted.
// Every error reads "nitrosigner: <gRPC code>: <message>" on stderr: the
// server's code (e.g. "nitrosigner: NotFound: key not found"),
// InvalidArgument for usage errors (e.g. "nitrosigner: InvalidArgument:
// --digest is not valid hex"), Unauthenticated for a failed attestation
// check, and Unknown for a local failure no code describes better (a file
// that cannot be written).
package main
