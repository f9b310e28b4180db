package server

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/internal/limits"
)

// The parent refuses oversized requests with the limits of package limits;
// they must be the enclave's own, or the parent would refuse requests the
// enclave accepts (or forward ones it refuses anyway).
func TestParentLimitsAreTheEnclaves(t *testing.T) {
	assert.Equal(t, maxKeyIDLen, limits.KeyID, "key_id")
	assert.Equal(t, MaxMessageSize, limits.Message, "message")
	assert.Equal(t, eth.MaxMessageSize, limits.EthPersonalMessage, "eth_personal_message")
	assert.Equal(t, eth.MaxTypedDataSize, limits.EthTypedDataJSON, "eth_typed_data_json")
	assert.Equal(t, eth.MaxTxSize, limits.EthUnsignedRLP, "eth_transaction.unsigned_rlp")
	assert.Equal(t, maxEthFieldsSize, limits.EthFields, "eth_transaction.fields")
	assert.Equal(t, btc.MaxPSBTSize, limits.BitcoinPSBT, "bitcoin_psbt.psbt")
	assert.Equal(t, sol.MaxTransactionSize, limits.SolanaMessage, "solana_message")
}
