package server

import (
	"encoding/hex"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// maxEthFieldsSize bounds the protobuf encoding of an eth_transaction given
// field by field. Hex doubles every byte and each field costs a few bytes of
// framing, so any transaction within [eth.MaxTxSize] once RLP-encoded fits
// well under three times that.
const maxEthFieldsSize = 3 * eth.MaxTxSize

// job is one payload ready to sign: the request field it came from and the
// function that signs it with the key the keyring lends.
type job struct {
	field string
	// pub asks the keyring for the public key too (for ECDSA keys a point
	// decompression, unless recently cached, so raw signatures go without).
	pub  bool
	sign func(sc sign.Scheme, priv, pub []byte) (*signerv1.SignResponse, error)
}

// chainSigner is a chain package's signing function; ds is the key's
// scheme, through the enclave's combiner where it batches.
type chainSigner func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error)

// chainJob checks a chain payload's size and returns the job that signs it:
// the key must be of the chain's algorithm, then the chain package decodes,
// checks and signs. Errors are InvalidArgument status errors naming the
// field; the chain package's own errors pass through unchanged, for
// [Server.toStatus].
func chainJob(r *signerv1.SignRequest) (job, error) {
	const (
		k1 = signerv1.Algorithm_ALGORITHM_SECP256K1
		ed = signerv1.Algorithm_ALGORITHM_ED25519
	)
	switch p := r.GetPayload().(type) {
	case *signerv1.SignRequest_EthTransaction:
		tx := p.EthTransaction
		if b := tx.GetUnsignedRlp(); len(b) > eth.MaxTxSize {
			return job{}, invalid("eth_transaction.unsigned_rlp", "must be at most %d bytes, got %d", eth.MaxTxSize, len(b))
		}
		if f := tx.GetFields(); f != nil {
			if n := proto.Size(f); n > maxEthFieldsSize {
				return job{}, invalid("eth_transaction.fields", "must encode to at most %d bytes, got %d", maxEthFieldsSize, n)
			}
		}
		return onChain("eth_transaction", "Ethereum", k1, func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return eth.SignTransaction(ds, priv, pub, tx)
		}), nil
	case *signerv1.SignRequest_EthPersonalMessage:
		msg := p.EthPersonalMessage
		if err := checkSize("eth_personal_message", len(msg), eth.MaxMessageSize); err != nil {
			return job{}, err
		}
		return onChain("eth_personal_message", "Ethereum", k1, func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return eth.SignPersonalMessage(ds, priv, pub, msg)
		}), nil
	case *signerv1.SignRequest_EthTypedDataJson:
		td := p.EthTypedDataJson
		if err := checkSize("eth_typed_data_json", len(td), eth.MaxTypedDataSize); err != nil {
			return job{}, err
		}
		return onChain("eth_typed_data_json", "Ethereum", k1, func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return eth.SignTypedData(ds, priv, pub, td)
		}), nil
	case *signerv1.SignRequest_BitcoinSighash:
		sh := p.BitcoinSighash
		if n := len(sh.GetSighash()); n != 32 {
			return job{}, invalid("bitcoin_sighash.sighash", "must be 32 bytes, got %d", n)
		}
		if n := len(sh.GetTaprootMerkleRoot()); n > 32 {
			return job{}, invalid("bitcoin_sighash.taproot_merkle_root", "must be empty or 32 bytes, got %d", n)
		}
		return onChain("bitcoin_sighash", "Bitcoin", k1, func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return btc.SignSighash(ds, priv, pub, sh)
		}), nil
	case *signerv1.SignRequest_BitcoinPsbt:
		pkt := p.BitcoinPsbt
		if err := checkSize("bitcoin_psbt.psbt", len(pkt.GetPsbt()), btc.MaxPSBTSize); err != nil {
			return job{}, err
		}
		return onChain("bitcoin_psbt", "Bitcoin", k1, func(ds sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return btc.SignPSBT(ds, priv, pub, pkt)
		}), nil
	case *signerv1.SignRequest_SolanaMessage:
		msg := p.SolanaMessage
		if err := checkSize("solana_message", len(msg), sol.MaxTransactionSize); err != nil {
			return job{}, err
		}
		return onChain("solana_message", "Solana", ed, func(_ sign.DigestSigner, priv, pub []byte) (*signerv1.SignResponse, error) {
			return sol.SignMessage(priv, pub, msg)
		}), nil
	}
	return job{}, invalid("payload", "one of digest, message, eth_transaction, eth_personal_message, "+
		"eth_typed_data_json, bitcoin_sighash, bitcoin_psbt or solana_message is required")
}

// checkSize refuses an empty payload or one over max bytes.
func checkSize(field string, n, max int) error {
	switch {
	case n == 0:
		return invalid(field, "must not be empty")
	case n > max:
		return invalid(field, "must be at most %d bytes, got %d", max, n)
	}
	return nil
}

// onChain makes the job for a payload of chain that keys of alg sign: any
// other key is refused with InvalidArgument before fn runs.
func onChain(field, chain string, alg signerv1.Algorithm, fn chainSigner) job {
	want := "a secp256k1"
	if alg == signerv1.Algorithm_ALGORITHM_ED25519 {
		want = "an ed25519"
	}
	return job{field: field, pub: true, sign: func(sc sign.Scheme, priv, pub []byte) (*signerv1.SignResponse, error) {
		if sc.Algorithm() != alg {
			return nil, invalid(field, "%s keys cannot sign %s payloads; use %s key", sc.Name(), chain, want)
		}
		return fn(sc, priv, pub)
	}}
}

// maxLogText bounds a caller-chosen string (an EIP-712 domain name, say)
// copied into a log line.
const maxLogText = 64

// clip cuts untrusted text for a log line.
func clip(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	cut := maxLogText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// summaryAttrs turns what a chain package decoded into log attributes: the
// fields an operator needs to tell what was signed. It never includes the
// payload itself, the signature or key material.
func summaryAttrs(field string, resp *signerv1.SignResponse) []any {
	switch c := resp.GetSummary().GetChain().(type) {
	case *signerv1.PayloadSummary_Ethereum:
		e := c.Ethereum
		switch e.GetKind() {
		case "transaction":
			a := []any{"chain_id", e.GetChainId(), "tx_type", e.GetTxType(), "to", e.GetTo(), "value", e.GetValue(),
				"nonce", e.GetNonce(), "gas_limit", e.GetGasLimit()}
			if e.GetTxType() == 2 {
				a = append(a, "max_fee_per_gas", e.GetMaxFeePerGas(), "max_priority_fee_per_gas", e.GetMaxPriorityFeePerGas())
			} else {
				a = append(a, "gas_price", e.GetGasPrice())
			}
			if len(e.GetSelector()) > 0 {
				a = append(a, "selector", hex.EncodeToString(e.GetSelector()))
			}
			return append(a, "data_length", e.GetDataLength(), "tx_hash", hex.EncodeToString(resp.GetTxHash()))
		case "typed_data":
			return []any{"chain_id", e.GetChainId(), "domain_name", clip(e.GetDomainName()),
				"verifying_contract", e.GetVerifyingContract(), "primary_type", clip(e.GetPrimaryType())}
		case "personal_message":
			return []any{"message_length", e.GetMessageLength()}
		}
	case *signerv1.PayloadSummary_Bitcoin:
		b := c.Bitcoin
		if field == "bitcoin_sighash" {
			return []any{"scheme", b.GetScheme()}
		}
		// The commitment flags say whether the fee, amounts and outputs
		// logged are what the signatures bind; a SIGHASH_NONE signature
		// or an unbound fee must not log like an ordinary one.
		return []any{"network", b.GetNetwork().String(), "inputs", len(b.GetInputs()), "outputs", len(b.GetOutputs()),
			"signed_inputs", b.GetSignedInputs(), "total_input", b.GetTotalInput(), "total_output", b.GetTotalOutput(),
			"fee", b.GetFee(), "amounts_committed", b.GetAmountsCommitted(), "outputs_committed", b.GetOutputsCommitted(),
			"inputs_committed", b.GetInputsCommitted()}
	case *signerv1.PayloadSummary_Solana:
		s := c.Solana
		transfers := make([]string, len(s.GetTransfers()))
		for i, t := range s.GetTransfers() {
			transfers[i] = fmt.Sprintf("%s>%s:%d", t.GetFrom(), t.GetTo(), t.GetLamports())
		}
		return []any{"version", s.GetVersion(), "fee_payer", s.GetFeePayer(), "program_ids", s.GetProgramIds(),
			"transfers", transfers}
	}
	return nil
}
