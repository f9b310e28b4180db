package btc

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// sighashSize is the length of every sighash this package signs.
const sighashSize = 32

// sighashNames holds the sighash types this package signs with and their
// summary names. All are valid BIP-341 types; all but DEFAULT are valid for
// ECDSA (legacy and BIP-143).
var sighashNames = map[txscript.SigHashType]string{
	txscript.SigHashDefault:                               "DEFAULT",
	txscript.SigHashAll:                                   "ALL",
	txscript.SigHashNone:                                  "NONE",
	txscript.SigHashSingle:                                "SINGLE",
	txscript.SigHashAll | txscript.SigHashAnyOneCanPay:    "ALL|ANYONECANPAY",
	txscript.SigHashNone | txscript.SigHashAnyOneCanPay:   "NONE|ANYONECANPAY",
	txscript.SigHashSingle | txscript.SigHashAnyOneCanPay: "SINGLE|ANYONECANPAY",
}

// validECDSAType reports whether t is ALL, NONE or SINGLE, optionally with
// ANYONECANPAY.
func validECDSAType(t txscript.SigHashType) bool {
	_, ok := sighashNames[t]
	return ok && t != txscript.SigHashDefault
}

// validSchnorrType reports whether t is a BIP-341 sighash type: DEFAULT or
// one of the ECDSA types.
func validSchnorrType(t txscript.SigHashType) bool {
	_, ok := sighashNames[t]
	return ok
}

// signECDSA signs hash with priv through ds (RFC 6979 nonces, low-S: the
// signature ecdsa.Sign makes) and returns it DER-encoded, followed by the
// sighash type byte. The signature is verified against pub before it is
// returned.
func signECDSA(ds sign.DigestSigner, priv []byte, pub *btcec.PublicKey, hash []byte, t txscript.SigHashType) ([]byte, error) {
	compact, err := ds.SignDigest(priv, hash)
	if err != nil {
		return nil, fmt.Errorf("bitcoin: ecdsa sign: %w", err)
	}
	var r, s btcec.ModNScalar
	if len(compact) != 65 || r.SetByteSlice(compact[:32]) || s.SetByteSlice(compact[32:64]) {
		return nil, errors.New("bitcoin: unexpected signature shape from the secp256k1 signer")
	}
	sig := ecdsa.NewSignature(&r, &s)
	if !sig.Verify(hash, pub) {
		return nil, errors.New("bitcoin: ecdsa signature failed verification")
	}
	return append(sig.Serialize(), byte(t)), nil
}

// tweakKey returns the BIP-341 tweaked private key for key and merkleRoot
// (empty for BIP-86): d' = (d or n-d, whichever gives an even-Y point) + t,
// with t = int(hash_TapTweak(xonly(P) || merkleRoot)). The caller zeroes the
// result.
func tweakKey(key *btcec.PrivateKey, merkleRoot []byte) (*btcec.PrivateKey, error) {
	pub := key.PubKey()
	var d btcec.ModNScalar
	d.Set(&key.Key)
	defer d.Zero()
	if pub.SerializeCompressed()[0] == secp256k1.PubKeyFormatCompressedOdd {
		d.Negate()
	}
	h := chainhash.TaggedHash(chainhash.TagTapTweak, schnorr.SerializePubKey(pub), merkleRoot)
	var t btcec.ModNScalar
	if overflow := t.SetBytes((*[32]byte)(h)); overflow != 0 {
		return nil, errors.New("bitcoin: taproot tweak is not below the group order")
	}
	d.Add(&t)
	if d.IsZero() {
		return nil, errors.New("bitcoin: taproot tweaked key is zero")
	}
	return btcec.PrivKeyFromScalar(&d), nil
}

// signSchnorr makes a BIP-340 signature over hash with the BIP-340 nonce
// derived from aux, after the BIP-341 key-path tweak when tweak is set. The
// answer is 64 bytes, plus the sighash type byte when t is not DEFAULT.
// btcec verifies the signature before returning it.
func signSchnorr(key *btcec.PrivateKey, hash []byte, tweak bool, merkleRoot []byte, t txscript.SigHashType, aux [32]byte) ([]byte, error) {
	signer := key
	if tweak {
		tk, err := tweakKey(key, merkleRoot)
		if err != nil {
			return nil, err
		}
		defer tk.Zero()
		signer = tk
	}
	sig, err := schnorr.Sign(signer, hash, schnorr.CustomNonce(aux))
	if err != nil {
		return nil, fmt.Errorf("bitcoin: schnorr sign: %w", err)
	}
	out := sig.Serialize()
	if t != txscript.SigHashDefault {
		out = append(out, byte(t))
	}
	return out, nil
}

// freshAux returns 32 bytes of BIP-340 auxiliary randomness.
func freshAux() [32]byte {
	var aux [32]byte
	_, _ = rand.Read(aux[:]) // crypto/rand.Read never fails (Go 1.24+)
	return aux
}

// SignSighash signs a caller-computed sighash: ECDSA → DER (low-S) ||
// sighash_type byte; Schnorr (BIP-340) → 64 bytes (|| type byte when type !=
// 0), with the BIP-341 key-path tweak when requested (tweak with the optional
// merkle root; the even-Y handling of BIP-340/341 done right). Summary:
// BitcoinSummary.scheme.
//
// The summary's scheme is "ecdsa", "schnorr" or "schnorr_taproot" (tweaked),
// a colon and the sighash type name ("ALL", "DEFAULT", "SINGLE|ANYONECANPAY",
// ...). ECDSA accepts the types ALL, NONE, SINGLE with or without
// ANYONECANPAY; Schnorr also DEFAULT (0). Schnorr nonces use fresh BIP-340
// auxiliary randomness. Request errors wrap [sign.ErrInvalidPayload], key
// errors [sign.ErrInvalidKey].
func SignSighash(ds sign.DigestSigner, priv, pub []byte, req *signerv1.BitcoinSighash) (*signerv1.SignResponse, error) {
	if req == nil {
		return nil, invalid("bitcoin_sighash: request is empty")
	}
	if len(req.GetSighash()) != sighashSize {
		return nil, invalid("bitcoin_sighash: sighash is %d bytes, want %d", len(req.GetSighash()), sighashSize)
	}
	if req.GetSighashType() > 0xff {
		return nil, invalid("bitcoin_sighash: sighash_type %d does not fit in a byte", req.GetSighashType())
	}
	t := txscript.SigHashType(req.GetSighashType())
	root := req.GetTaprootMerkleRoot()
	var scheme string
	switch req.GetScheme() {
	case signerv1.BitcoinSighash_SCHEME_ECDSA:
		scheme = "ecdsa"
		if !validECDSAType(t) {
			return nil, invalid("bitcoin_sighash: sighash_type 0x%02x is not valid for ecdsa (use 1 for SIGHASH_ALL)", uint32(t))
		}
		if req.GetTaprootTweak() || len(root) != 0 {
			return nil, invalid("bitcoin_sighash: taproot_tweak and taproot_merkle_root apply to schnorr only")
		}
	case signerv1.BitcoinSighash_SCHEME_SCHNORR:
		scheme = "schnorr"
		if !validSchnorrType(t) {
			return nil, invalid("bitcoin_sighash: sighash_type 0x%02x is not a BIP-341 sighash type", uint32(t))
		}
		if req.GetTaprootTweak() {
			scheme = "schnorr_taproot"
			if len(root) != 0 && len(root) != 32 {
				return nil, invalid("bitcoin_sighash: taproot_merkle_root is %d bytes, want 32 or empty", len(root))
			}
		} else if len(root) != 0 {
			return nil, invalid("bitcoin_sighash: taproot_merkle_root needs taproot_tweak")
		}
	default:
		return nil, invalid("bitcoin_sighash: scheme must be ecdsa or schnorr, got %v", req.GetScheme())
	}

	pk, err := parsePub(pub)
	if err != nil {
		return nil, err
	}
	key, err := privateKey(priv, pk)
	if err != nil {
		return nil, err
	}
	defer key.Zero()

	var sig []byte
	if scheme == "ecdsa" {
		sig, err = signECDSA(ds, priv, pk, req.GetSighash(), t)
	} else {
		sig, err = signSchnorr(key, req.GetSighash(), req.GetTaprootTweak(), root, t, freshAux())
	}
	if err != nil {
		return nil, err
	}
	return &signerv1.SignResponse{
		Signature: sig,
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Bitcoin{Bitcoin: &signerv1.BitcoinSummary{
			Scheme: scheme + ":" + sighashNames[t],
		}}},
	}, nil
}
