// Package limits holds the size limits of a SignRequest's fields, and the
// checks of a freeze reason. The parent refuses a request over one of them
// before forwarding it, so that an oversized request costs the enclave
// nothing; the enclave checks the same limits again and remains
// authoritative. A test in the enclave's server package keeps these values
// equal to the enclave's own.
package limits

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

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

// FreezeReason is the longest reason a freeze accepts, in bytes.
const FreezeReason = 256

// CheckFreezeReason checks the reason given to a freeze: 1 to
// [FreezeReason] bytes of valid UTF-8 without control characters, since it
// is shown to operators and clients and written to logs. The error does not
// name the field; callers do.
func CheckFreezeReason(r string) error {
	switch {
	case r == "":
		return errors.New("required: say why signing is frozen")
	case len(r) > FreezeReason:
		return fmt.Errorf("at most %d bytes, got %d", FreezeReason, len(r))
	case !utf8.ValidString(r):
		return errors.New("must be valid UTF-8")
	}
	for _, c := range r {
		if unicode.IsControl(c) {
			return fmt.Errorf("must not hold control characters (found %U)", c)
		}
	}
	return nil
}
