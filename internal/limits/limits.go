// Package limits holds the size limits of a SignRequest's fields. The
// parent refuses a request over one of them before forwarding it, so that
// an oversized request costs the enclave nothing; the enclave checks the
// same limits again and remains authoritative. A test in the enclave's
// server package keeps these values equal to the enclave's own.
package limits

// Largest accepted size, in bytes, of each field of nitrosigner.v1.SignRequest
// that has one.
const (
	KeyID              = 128                // key_id
	Message            = 64 << 10           // message (ed25519)
	EthPersonalMessage = 64 << 10           // eth_personal_message
	EthTypedDataJSON   = 128 << 10          // eth_typed_data_json
	EthUnsignedRLP     = 128 << 10          // eth_transaction.unsigned_rlp
	EthFields          = 3 * EthUnsignedRLP // eth_transaction.fields, as encoded
	BitcoinPSBT        = 4 << 20            // bitcoin_psbt.psbt
	SolanaMessage      = 1232               // solana_message: Solana's transaction size limit
)
