package eth_test

import (
	"bytes"
	"math/big"
	"runtime"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
)

// A payload of one-byte items is refused before the decoder has built more
// than a bounded number of them (before the bound, 128 KiB of empty lists
// allocated 43 MB).
func TestRLPItemFlood(t *testing.T) {
	n := eth.MaxTxSize - 4
	in := append([]byte{0xfa, byte(n >> 16), byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0xc0}, n)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := eth.ReencodeUnsignedTx(in)
	runtime.ReadMemStats(&after)
	require.ErrorContains(t, err, "more than 20000 RLP items")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2<<20), "bytes allocated decoding a %d-byte flood", len(in))
}

// The densest real transaction under the size limit, an access list of
// addresses without storage keys, still decodes.
func TestRLPDensestAccessList(t *testing.T) {
	var al types.AccessList
	for i := range 5600 {
		al = append(al, types.AccessTuple{Address: common.BigToAddress(big.NewInt(int64(i + 1)))})
	}
	to := common.HexToAddress("0x3535353535353535353535353535353535353535")
	body, err := rlp.EncodeToBytes([]any{big.NewInt(1), uint64(0), big.NewInt(1), big.NewInt(2), uint64(21000), &to, big.NewInt(0), []byte{}, al})
	require.NoError(t, err)
	in := append([]byte{2}, body...)
	require.LessOrEqual(t, len(in), eth.MaxTxSize)
	out, err := eth.ReencodeUnsignedTx(in)
	require.NoError(t, err)
	assert.Equal(t, in, out)
}
