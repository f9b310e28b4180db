package sol_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/mr-tron/base58"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
)

// cat concatenates byte slices into a new one.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestMalformed(t *testing.T) {
	v := loadLegacy(t)
	keys := rfcKeys(t)
	// The vector's message is 150 bytes: header 01 00 01 (offsets 0-2),
	// 3 account keys (count at 3, keys 4-99), blockhash 100-131,
	// instruction count at 132, one instruction at 133-149.
	require.Len(t, v.message, 150)
	msg := v.message
	header, keysPart := msg[:3], msg[4:100]

	legacy := func(edit func(m *sol.Message)) []byte {
		m, err := sol.Decode(bytes.Clone(msg)) // m aliases its input
		require.NoError(t, err)
		edit(m)
		return m.Encode()
	}
	v0 := func(edit func(m *sol.Message)) []byte {
		m := v0Message(pubOf(v.signer), pubOf(keys[1]))
		edit(m)
		return m.Encode()
	}
	signerB58 := base58.Encode(pubOf(v.signer))

	tests := []struct {
		name    string
		msg     []byte
		wantErr string
	}{
		{"empty", nil, "solana_message: empty"},
		{"truncated header", msg[:2],
			"solana_message: truncated: header: need 1 byte at offset 2, have 0"},
		{"truncated account keys", msg[:50],
			"solana_message: truncated: 3 account keys: need 96 bytes at offset 4, have 46"},
		{"truncated blockhash", msg[:120],
			"solana_message: truncated: recent blockhash: need 32 bytes at offset 100, have 20"},
		{"no instruction count", msg[:132],
			"solana_message: truncated: instruction count: need 1 byte at offset 132, have 0"},
		{"truncated instruction data", msg[:145],
			"solana_message: truncated: instruction 0 data: need 12 bytes at offset 138, have 7"},
		{"instruction count beyond the data", cat(msg[:132], []byte{0x06}, msg[133:]),
			"solana_message: truncated: 6 instructions: need 18 bytes at offset 133, have 17"},
		{"missing second instruction", cat(msg[:132], []byte{0x02}, msg[133:]),
			"solana_message: truncated: instruction 1 program index: need 1 byte at offset 150, have 0"},
		{"non-canonical compact-u16", cat(header, []byte{0x83, 0x00}, keysPart, msg[100:]),
			"solana_message: account key count at offset 3: non-canonical compact-u16 (trailing zero byte)"},
		{"non-canonical compact-u16 (3 bytes)", cat(msg[:132], []byte{0x81, 0x80, 0x00}, msg[133:]),
			"solana_message: instruction count at offset 132: non-canonical compact-u16 (trailing zero byte)"},
		{"compact-u16 longer than 3 bytes", cat(msg[:132], []byte{0xff, 0xff, 0xff, 0x01}, msg[133:]),
			"solana_message: instruction count at offset 132: compact-u16 longer than 3 bytes"},
		{"compact-u16 over 16 bits", cat(msg[:132], []byte{0xff, 0xff, 0x04}, msg[133:]),
			"solana_message: instruction count at offset 132: compact-u16 overflows 16 bits"},
		{"trailing bytes", cat(msg, []byte{0}),
			"solana_message: trailing data after the message: 1 byte at offset 150"},
		{"trailing bytes after v0 lookups", cat(v0(func(*sol.Message) {}), []byte{1, 2}),
			"solana_message: trailing data after the message: 2 bytes at offset 425"},
		{"unknown version", cat([]byte{0x81}, msg),
			"solana_message: unsupported message version 1 (want legacy or v0)"},
		{"version 127", cat([]byte{0xff}, msg),
			"solana_message: unsupported message version 127 (want legacy or v0)"},
		{"no required signature", legacy(func(m *sol.Message) { m.NumRequiredSignatures = 0 }),
			"solana_message: header: no required signatures (the fee payer must sign)"},
		{"fee payer read-only", legacy(func(m *sol.Message) { m.NumReadonlySigned = 1 }),
			"solana_message: header: 1 read-only signer of 1 required signature leaves no writable fee payer"},
		{"header counts exceed keys", legacy(func(m *sol.Message) { m.NumRequiredSignatures, m.NumReadonlyUnsigned = 2, 2 }),
			"solana_message: header: 2 required signatures + 2 read-only unsigned accounts exceed the 3 account keys"},
		{"duplicate account key", legacy(func(m *sol.Message) { m.Keys[2] = m.Keys[0] }),
			"solana_message: account key 2 duplicates account key 0 (" + signerB58 + ")"},
		{"account index out of range", legacy(func(m *sol.Message) { m.Instructions[0].Accounts[1] = 9 }),
			"solana_message: instruction 0: account index 9 out of range (3 accounts)"},
		{"program index out of range", legacy(func(m *sol.Message) { m.Instructions[0].ProgramIndex = 3 }),
			"solana_message: instruction 0: program index 3 out of range (3 static account keys)"},
		{"fee payer as program", legacy(func(m *sol.Message) { m.Instructions[0].ProgramIndex = 0 }),
			"solana_message: instruction 0: program index 0 is the fee payer"},
		{"v0 account index out of range", v0(func(m *sol.Message) { m.Instructions[1].Accounts[1] = 9 }),
			"solana_message: instruction 1: account index 9 out of range (9 accounts)"},
		{"v0 program from lookup table", v0(func(m *sol.Message) { m.Instructions[2].ProgramIndex = 5 }),
			"solana_message: instruction 2: program index 5 out of range (5 static account keys)"},
		{"v0 lookup loads nothing", v0(func(m *sol.Message) { m.AddressTableLookups[1].Writable = nil }),
			"solana_message: address table lookup 1: loads no accounts"},
		{"v0 lookup loads an account twice", v0(func(m *sol.Message) { m.AddressTableLookups[0].Readonly = []byte{9} }),
			"solana_message: address table lookup 0: table " + base58.Encode(filled(0xaa)) + " index 9 is loaded twice"},
		{"v0 over 256 accounts", v0(func(m *sol.Message) {
			m.AddressTableLookups[1].Readonly = bytes.Repeat([]byte{0}, 248)
			for i := range m.AddressTableLookups[1].Readonly {
				m.AddressTableLookups[1].Readonly[i] = byte(i + 1)
			}
		}), "solana_message: address table lookup 1: more than 256 accounts in total"},
		{"v0 lookup count beyond the data", v0(func(*sol.Message) {})[:400],
			"solana_message: truncated: 2 address table lookups: need 68 bytes at offset 353, have 47"},
		{"v0 truncated lookup", v0(func(*sol.Message) {})[:424],
			"solana_message: truncated: address table lookup 1 read-only index count: need 1 byte at offset 424, have 0"},
		{"v0 missing lookup count", v0(func(m *sol.Message) { m.AddressTableLookups = nil })[:352],
			"solana_message: truncated: address table lookup count: need 1 byte at offset 352, have 0"},
		{"message over the size limit", legacy(func(m *sol.Message) { m.Instructions[0].Data = make([]byte, 1094) }),
			"solana_message: message is 1233 bytes, over Solana's 1232-byte transaction limit"},
		{"transaction over the size limit", legacy(func(m *sol.Message) { m.Instructions[0].Data = make([]byte, 1030) }),
			"solana_message: the signed transaction would be 1234 bytes (1 signature and a 1169-byte message), over Solana's 1232-byte limit"},
		{"not a signer", legacy(func(m *sol.Message) { m.Keys[0] = pubOf(keys[0]) }),
			"solana_message: key " + signerB58 + " is not a required signer of this message"},
		{"non-signing account", legacy(func(m *sol.Message) { m.Keys[0], m.Keys[1] = m.Keys[1], m.Keys[0] }),
			"solana_message: key " + signerB58 + " is not a required signer of this message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sol.SignMessage(v.signer, pubOf(v.signer), tt.msg)
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.EqualError(t, err, tt.wantErr)
		})
	}
}

// TestSizeLimitEdge checks that a transaction of exactly 1232 bytes is
// signed.
func TestSizeLimitEdge(t *testing.T) {
	v := loadLegacy(t)
	m, err := sol.Decode(v.message)
	require.NoError(t, err)
	m.Instructions[0].Data = append(m.Instructions[0].Data, make([]byte, 1232-65-150-1)...)
	msg := m.Encode()
	resp, err := sol.SignMessage(v.signer, pubOf(v.signer), msg)
	require.NoError(t, err)
	assert.Len(t, resp.GetSignedPayload(), 1232)
	assert.True(t, ed25519.Verify(pubOf(v.signer), msg, resp.GetSignature()))
	// Trailing bytes after a transfer's data are allowed by the System
	// Program, so the transfer is still reported.
	require.Len(t, solanaSummary(t, resp).GetTransfers(), 1)
	assert.Equal(t, v.Lamports, solanaSummary(t, resp).GetTransfers()[0].GetLamports())
}
