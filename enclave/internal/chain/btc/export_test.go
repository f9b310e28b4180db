package btc

import (
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/txscript"
)

// ErrDecoderFault is returned when btcd's decoder panicked on an input that
// passed the framing checks; tests and the fuzz target treat it as a bug.
var ErrDecoderFault = errDecoderFault

// SignSchnorrAux signs a 32-byte message with BIP-340 and the given
// auxiliary randomness (plain key, no tweak), for the BIP-340 vectors.
func SignSchnorrAux(priv, msg []byte, aux [32]byte) ([]byte, error) {
	key, _ := btcec.PrivKeyFromBytes(priv)
	defer key.Zero()
	return signSchnorr(key, msg, false, nil, txscript.SigHashDefault, aux)
}

// SignTaprootAux signs a BIP-341 key-path sighash with the tweak for
// merkleRoot and the given auxiliary randomness, for the BIP-341 vectors.
func SignTaprootAux(priv, sighash, merkleRoot []byte, hashType txscript.SigHashType, aux [32]byte) ([]byte, error) {
	key, _ := btcec.PrivKeyFromBytes(priv)
	defer key.Zero()
	return signSchnorr(key, sighash, true, merkleRoot, hashType, aux)
}

// TweakedPrivKey returns the BIP-341 tweaked private key bytes.
func TweakedPrivKey(priv, merkleRoot []byte) ([]byte, error) {
	key, _ := btcec.PrivKeyFromBytes(priv)
	defer key.Zero()
	tk, err := tweakKey(key, merkleRoot)
	if err != nil {
		return nil, err
	}
	defer tk.Zero()
	return tk.Serialize(), nil
}
