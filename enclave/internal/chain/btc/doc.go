// Package btc derives Bitcoin addresses for secp256k1 keys and signs Bitcoin
// payloads: caller-computed sighashes and BIP-174 (version 0) PSBTs.
//
// It runs inside the enclave on untrusted bytes. Every parser here assumes the
// input is hostile: the PSBT's framing is walked and bounded before btcd's
// decoders see it (at most [MaxPSBTSize] bytes, 2,500 inputs and 10,000
// outputs, 1,000 entries per map and 100,000 in all, of which at most 10,000
// are keyed by a public key, no duplicate keys, no trailing bytes), which
// also keeps out inputs that make btcd's PSBT decoder
// panic or allocate without bound; a panic that still happens in the decoder
// is turned into an error. UTXO data is cross-checked, amounts are
// range-checked, and each signature is verified against the public key before
// it leaves the package. The package does no I/O and keeps no state.
//
// # Keys
//
// Private keys are 32-byte big-endian scalars and public keys SEC1
// uncompressed points (65 bytes), as the sign package stores them. The
// functions take both and refuse a pair that does not match. Derived private
// material (taproot-tweaked keys) is zeroized after use; the caller owns and
// zeroizes the key bytes it passes in.
//
// ECDSA signatures are made through the [sign.DigestSigner] the caller
// passes: the secp256k1 scheme of package sign, or the enclave's combined
// one, which signs concurrent calls in batches. Either gives the RFC 6979,
// low-S signature that btcd's ecdsa.Sign gives, byte for byte. Schnorr
// signatures (BIP-340 nonces with fresh auxiliary randomness) are made here.
//
// # Addresses
//
// A key has one P2WPKH address (BIP-84 style: witness v0 over
// HASH160(compressed public key), bech32) and one P2TR address (BIP-86: the
// BIP-341 tweak of the x-only key with no script tree, bech32m) per network.
//
// # What SignPSBT signs
//
// An input is signed when its UTXO (witness_utxo, or the output of a
// non_witness_utxo whose txid matches the outpoint) is this key's P2WPKH
// script (BIP-143 sighash, ECDSA) or this key's BIP-86 P2TR script (BIP-341
// key-path sighash, BIP-340 Schnorr). Finalized inputs are left alone. Every
// input must carry UTXO data, so that the fee in the summary is exact and the
// taproot sighash (which commits to all amounts) can be computed. Other inputs
// that clearly belong to the key (legacy P2PKH/P2PK, nested P2SH-P2WPKH, or
// derivation data naming the key on a script this package cannot sign) are
// refused rather than silently skipped.
//
// A P2WPKH signature commits only to its own input's amount (the BIP-143
// "fee" weakness): with only witness_utxo data, every input's amount and
// script in the summary (this key's included) are what the caller claims,
// and two requests that each lie about a different input can be combined
// into a transaction with a far larger fee. A non_witness_utxo is checked
// against the outpoint. The summary therefore says what the signatures
// bind: utxo_verified per input, and amounts_committed (all amounts bound:
// every previous transaction given, or a signed P2TR input whose previous
// transaction was given, whose BIP-341 sighash commits to all of them),
// outputs_committed (no NONE or SINGLE) and inputs_committed (no
// ANYONECANPAY). A policy must require them before it trusts the fee, the
// amounts or the outputs.
//
// A signed P2TR input counts only when its previous transaction was given:
// on witness_utxo alone, "this key's P2TR output" is the caller's claim. The
// outpoint may be the caller's own taproot output, which the caller spends
// with its own key, dropping this key's signature and with it the
// commitment to every amount, while the P2WPKH signatures stay valid.
//
// # Errors
//
// Every error caused by the request wraps [sign.ErrInvalidPayload] (or
// [sign.ErrInvalidKey] for key bytes) and names the problem, for example
// "bitcoin_psbt: input 1: missing witness_utxo (UTXO data required to sign)".
// [ErrNoInputForKey] marks a well-formed PSBT with nothing for this key to
// sign. No error carries key material.
package btc
