package btc

import (
	"bytes"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// payloadError is an error whose message is shown as is and which wraps a
// sign sentinel, so that callers can branch with errors.Is while the text
// names only the problem.
type payloadError struct {
	msg  string
	kind error
}

func (e *payloadError) Error() string { return e.msg }
func (e *payloadError) Unwrap() error { return e.kind }

// invalid returns an error wrapping [sign.ErrInvalidPayload].
func invalid(format string, args ...any) error {
	return &payloadError{msg: fmt.Sprintf(format, args...), kind: sign.ErrInvalidPayload}
}

// invalidKey returns an error wrapping [sign.ErrInvalidKey].
func invalidKey(format string, args ...any) error {
	return &payloadError{msg: fmt.Sprintf(format, args...), kind: sign.ErrInvalidKey}
}

// ErrNoInputForKey is returned by [SignPSBT] for a well-formed PSBT in which
// no input can be signed by the key. It wraps [sign.ErrInvalidPayload]; a
// server may map it to FailedPrecondition.
var ErrNoInputForKey error = &payloadError{msg: "bitcoin_psbt: no input belongs to this key", kind: sign.ErrInvalidPayload}

// pubKeySize is the length of a SEC1 uncompressed public key.
const pubKeySize = 65

// keyInfo is everything derived from a public key that the package compares
// scripts and keys against.
type keyInfo struct {
	pub          *btcec.PublicKey
	compressed   []byte // 33 bytes, SEC1 compressed
	uncompressed []byte // 65 bytes
	xOnly        []byte // 32 bytes, BIP-340 x-only internal key
	outputKey    []byte // 32 bytes, BIP-86 tweaked output key
	p2wpkh       []byte // 0x00 0x14 HASH160(compressed)
	p2tr         []byte // 0x51 0x20 outputKey
	// Scripts that pay this key in ways this package does not sign.
	legacy map[string]string // script bytes -> script type
}

// parsePub checks that pub is a 65-byte SEC1 uncompressed point on the
// curve.
func parsePub(pub []byte) (*btcec.PublicKey, error) {
	if len(pub) != pubKeySize || pub[0] != 0x04 {
		return nil, invalidKey("bitcoin: public key must be %d-byte SEC1 uncompressed (0x04 || X || Y)", pubKeySize)
	}
	pk, err := btcec.ParsePubKey(pub)
	if err != nil {
		return nil, invalidKey("bitcoin: public key is not a point on secp256k1")
	}
	return pk, nil
}

// parseKey parses pub (see parsePub) and derives the key's scripts.
func parseKey(pub []byte) (*keyInfo, error) {
	pk, err := parsePub(pub)
	if err != nil {
		return nil, err
	}
	k := &keyInfo{
		pub:          pk,
		compressed:   pk.SerializeCompressed(),
		uncompressed: pk.SerializeUncompressed(),
		xOnly:        schnorr.SerializePubKey(pk),
		outputKey:    schnorr.SerializePubKey(txscript.ComputeTaprootKeyNoScript(pk)),
	}
	hashC := btcutil.Hash160(k.compressed)
	hashU := btcutil.Hash160(k.uncompressed)
	k.p2wpkh = append([]byte{txscript.OP_0, txscript.OP_DATA_20}, hashC...)
	k.p2tr = append([]byte{txscript.OP_1, txscript.OP_DATA_32}, k.outputKey...)
	p2pkh := func(h []byte) []byte {
		return append(append([]byte{txscript.OP_DUP, txscript.OP_HASH160, txscript.OP_DATA_20}, h...),
			txscript.OP_EQUALVERIFY, txscript.OP_CHECKSIG)
	}
	p2pk := func(p []byte) []byte {
		return append(append([]byte{byte(len(p))}, p...), txscript.OP_CHECKSIG)
	}
	p2sh := append(append([]byte{txscript.OP_HASH160, txscript.OP_DATA_20}, btcutil.Hash160(k.p2wpkh)...), txscript.OP_EQUAL)
	k.legacy = map[string]string{
		string(p2pkh(hashC)):         "p2pkh",
		string(p2pkh(hashU)):         "p2pkh (uncompressed key)",
		string(p2pk(k.compressed)):   "p2pk",
		string(p2pk(k.uncompressed)): "p2pk (uncompressed key)",
		string(p2sh):                 "p2sh-p2wpkh",
		string(append([]byte{txscript.OP_0, txscript.OP_DATA_20}, hashU...)):   "p2wpkh (uncompressed key)",
		string(append([]byte{txscript.OP_1, txscript.OP_DATA_32}, k.xOnly...)): "p2tr (untweaked key)",
	}
	return k, nil
}

// namesKey reports whether a public key from PSBT derivation data (33 or 65
// bytes, or 32-byte x-only) is this key.
func (k *keyInfo) namesKey(b []byte) bool {
	return bytes.Equal(b, k.compressed) || bytes.Equal(b, k.uncompressed) || bytes.Equal(b, k.xOnly)
}

// privateKey decodes the 32-byte scalar and checks that it belongs to pub.
// The caller zeroes the returned key.
func privateKey(priv []byte, pub *btcec.PublicKey) (*btcec.PrivateKey, error) {
	if len(priv) != btcec.PrivKeyBytesLen {
		return nil, invalidKey("bitcoin: private key is %d bytes, want %d", len(priv), btcec.PrivKeyBytesLen)
	}
	var s btcec.ModNScalar
	if overflow := s.SetByteSlice(priv); overflow || s.IsZero() {
		s.Zero()
		return nil, invalidKey("bitcoin: private key scalar out of range")
	}
	key := btcec.PrivKeyFromScalar(&s)
	s.Zero()
	if !key.PubKey().IsEqual(pub) {
		key.Zero()
		return nil, invalidKey("bitcoin: private key does not match the public key")
	}
	return key, nil
}

// networks lists the networks [Addresses] fills, in field order.
var networks = []*chaincfg.Params{&chaincfg.MainNetParams, &chaincfg.TestNet3Params, &chaincfg.RegressionNetParams}

// netParams maps the API network to btcd's parameters.
func netParams(n signerv1.BitcoinNetwork) (*chaincfg.Params, error) {
	switch n {
	case signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET:
		return &chaincfg.MainNetParams, nil
	case signerv1.BitcoinNetwork_BITCOIN_NETWORK_TESTNET:
		return &chaincfg.TestNet3Params, nil
	case signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST:
		return &chaincfg.RegressionNetParams, nil
	default:
		return nil, invalid("bitcoin_psbt: network must be mainnet, testnet or regtest, got %v", n)
	}
}

// addresses encodes the key's P2WPKH and P2TR addresses for one network.
func (k *keyInfo) addresses(p *chaincfg.Params) (p2wpkh, p2tr string, err error) {
	wpkh, err := btcutil.NewAddressWitnessPubKeyHash(k.p2wpkh[2:], p)
	if err != nil {
		return "", "", fmt.Errorf("encode p2wpkh address: %w", err)
	}
	tr, err := btcutil.NewAddressTaproot(k.outputKey, p)
	if err != nil {
		return "", "", fmt.Errorf("encode p2tr address: %w", err)
	}
	return wpkh.EncodeAddress(), tr.EncodeAddress(), nil
}

// Addresses returns P2WPKH (bech32, BIP-84 style: witness v0 of
// HASH160(compressed pub)) and P2TR (bech32m, BIP-86: BIP-341 tweak with no
// script tree) addresses for mainnet, testnet and regtest, filling the
// bitcoin_* fields of signerv1.Addresses. pub is SEC1 uncompressed (65
// bytes). The error wraps [sign.ErrInvalidKey] when pub is not such a point.
func Addresses(pub []byte) (*signerv1.Addresses, error) {
	k, err := parseKey(pub)
	if err != nil {
		return nil, err
	}
	var out [6]string
	for i, p := range networks {
		if out[2*i], out[2*i+1], err = k.addresses(p); err != nil {
			return nil, err
		}
	}
	return &signerv1.Addresses{
		BitcoinP2Wpkh:        out[0],
		BitcoinP2Tr:          out[1],
		BitcoinTestnetP2Wpkh: out[2],
		BitcoinTestnetP2Tr:   out[3],
		BitcoinRegtestP2Wpkh: out[4],
		BitcoinRegtestP2Tr:   out[5],
	}, nil
}
