//go:build !nosim

// Package kmssim is a simulator of AWS KMS that the unmodified
// aws-sdk-go-v2 KMS client talks to over HTTPS, including the attestation
// gate of Nitro Enclaves: Recipient, CiphertextForRecipient and the
// kms:RecipientAttestation key-policy conditions.
//
// # Trust level
//
// Development and tests only. Every file carries the build constraint
// !nosim, so production binaries (built with -tags nosim) cannot contain
// it. Key material sits unencrypted in the state directory, and the
// attestation roots it trusts are usually the NSM simulator's, whose key
// can mint documents with any PCRs.
//
// # Protocol
//
// The simulator speaks the KMS JSON 1.1 protocol: POST / with
// Content-Type application/x-amz-json-1.1 and X-Amz-Target
// TrentService.<Operation>; blobs are base64 strings and timestamps epoch
// seconds. [Server.Serve] speaks HTTP/1.1 over TLS. Answers carry
// X-Amzn-Requestid and a Date header from [Config.Now], from which the
// SDK corrects its signing clock as it does with real KMS. Errors are HTTP
// 400 (client) or
// 5xx (server) with {"__type": code, "message": text}, the code also in
// X-Amzn-ErrorType; AccessDeniedException spells its field "Message", as
// KMS does. Malformed JSON or wrongly typed members are
// SerializationException, unknown targets UnknownOperationException,
// missing or out-of-range members ValidationException with KMS's wording.
//
// Every request must be signed with SigV4 (AWS4-HMAC-SHA256, service
// "kms", the configured region) by one of [Config.Credentials], with
// X-Amz-Date within 15 minutes of [Config.Now]: an unknown access key id
// or session token gives UnrecognizedClientException, a wrong secret or
// scope InvalidSignatureException, no Authorization header
// MissingAuthenticationTokenException.
//
// # Operations
//
// Symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT,
// AWS_KMS origin) only: CreateKey, DescribeKey, ListKeys, EnableKey,
// DisableKey, ScheduleKeyDeletion (7..30 days, default 30; the key is
// deleted lazily once its deletion date has passed), CancelKeyDeletion (the
// key comes back Disabled), GetKeyPolicy, PutKeyPolicy (policy name
// "default"; the policy lockout safety check applies unless bypassed),
// CreateAlias, DeleteAlias, ListAliases, Encrypt, Decrypt, ReEncrypt,
// GenerateDataKey, GenerateDataKeyWithoutPlaintext and GenerateRandom.
// DryRun answers DryRunOperationException once authorization and key state
// pass. Key ids, key ARNs, and where KMS allows them alias names and
// alias ARNs, identify keys.
//
// Key states follow KMS: cryptographic operations on a Disabled key fail
// with DisabledException, on a key pending deletion with
// KMSInvalidStateException; unknown keys give NotFoundException.
//
// # Authorization
//
// Every operation on a key is evaluated with internal/kmspolicy against
// the key's policy, as action "kms:<Operation>" (ReEncrypt: kms:ReEncryptFrom
// on the source key and kms:ReEncryptTo on the destination) on the key ARN,
// for the caller's [Credential.PrincipalARN]. Keys created without a
// policy get KMS's default policy, which gives the account full access.
// Operations without a key (CreateKey, ListKeys, ListAliases,
// GenerateRandom) are evaluated against [Config.AccountPolicy] when one is
// set. A denial is AccessDeniedException with KMS's message.
//
// # Ciphertexts and encryption context
//
// Ciphertext blobs are the simulator's own versioned format (see blob.go):
// AES-256-GCM under the key's material, with the key id and the canonical
// encoding of the EncryptionContext as additional data. Decrypt without a
// KeyId finds the key from the blob; a KeyId naming another key gives
// IncorrectKeyException; a wrong context or a tampered blob gives
// InvalidCiphertextException.
//
// # Recipient
//
// Decrypt, GenerateDataKey and GenerateRandom accept a Recipient. Its
// KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256; the attestation
// document is verified with internal/attest against [Config.NSMRoots] at
// [Config.Now] (debug-mode documents are refused unless
// [Config.AllowDebug]); its public_key must be an RSA-2048
// SubjectPublicKeyInfo. A bad document gives ValidationException, a guess:
// KMS's code for it is undocumented. The document's PCRs then feed the
// policy's kms:RecipientAttestation:ImageSha384 and
// kms:RecipientAttestation:PCR<n> conditions, and the answer carries
// CiphertextForRecipient (internal/cms, the exact BER layout KMS emits)
// instead of the plaintext field.
//
// # State
//
// [Config.StateDir] holds [StateFile] (keys, material, policies, states,
// aliases; mode 0600, replaced atomically on every change), the TLS CA
// ([CACertFile], readable by clients, and [CAKeyFile]) and a lock file. A
// fresh server certificate for localhost, 127.0.0.1, ::1,
// kms.<region>.amazonaws.com and [Config.TLSNames] is issued under the CA
// at every start. State survives restarts; one Server at a time may hold a
// directory.
//
// # Faults
//
// [Server.Faults] injects latency, throttling (ThrottlingException),
// 500/503 answers and dropped connections, per request count, per
// operation, by hook or as a rate limit. [Server.Requests] counts requests
// per operation, so tests can observe SDK retries.
//
// # Logging
//
// One record per request with the operation, error code, key id,
// principal and duration. Secrets (key material, plaintext, data keys,
// secret access keys, signatures) are never logged or put in answers'
// error messages.
package kmssim
