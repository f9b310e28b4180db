package sol_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mr-tron/base58"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const systemProgramB58 = "11111111111111111111111111111111"

type legacyVector struct {
	SignerSeed    string `json:"signer_seed_hex"`
	SignerPubB58  string `json:"signer_pubkey_b58"`
	SignerPubHex  string `json:"signer_pubkey_hex"`
	RecipientB58  string `json:"recipient_b58"`
	Lamports      uint64 `json:"lamports"`
	BlockhashB58  string `json:"recent_blockhash_b58"`
	WireBase64    string `json:"wire_base64"`
	WireHex       string `json:"wire_hex"`
	MessageHex    string `json:"message_hex"`
	SignatureHex  string `json:"signature_hex"`
	SignatureB58  string `json:"signature_b58"`
	signer        ed25519.PrivateKey
	message, wire []byte
}

type rfcVector struct {
	Name      string `json:"name"`
	SecretKey string `json:"secret_key"`
	PublicKey string `json:"public_key"`
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func loadLegacy(t testing.TB) *legacyVector {
	t.Helper()
	var v legacyVector
	readJSON(t, "solana_legacy_transfer.json", &v)
	v.signer = ed25519.NewKeyFromSeed(unhex(t, v.SignerSeed))
	v.message = unhex(t, v.MessageHex)
	v.wire = unhex(t, v.WireHex)
	wire, err := base64.StdEncoding.DecodeString(v.WireBase64)
	require.NoError(t, err)
	require.Equal(t, v.wire, wire, "wire_hex and wire_base64 differ")
	return &v
}

// rfcKeys returns the RFC 8032 key pairs, checked against their listed
// public keys.
func rfcKeys(t testing.TB) []ed25519.PrivateKey {
	t.Helper()
	var f struct{ Vectors []rfcVector }
	readJSON(t, "ed25519_rfc8032.json", &f)
	require.NotEmpty(t, f.Vectors)
	var keys []ed25519.PrivateKey
	for _, v := range f.Vectors {
		k := ed25519.NewKeyFromSeed(unhex(t, v.SecretKey))
		require.Equal(t, unhex(t, v.PublicKey), []byte(k.Public().(ed25519.PublicKey)), v.Name)
		keys = append(keys, k)
	}
	return keys
}

func pubOf(k ed25519.PrivateKey) []byte { return k.Public().(ed25519.PublicKey) }

func solanaSummary(t *testing.T, r *signerv1.SignResponse) *signerv1.SolanaSummary {
	t.Helper()
	s := r.GetSummary().GetSolana()
	require.NotNil(t, s, "response has no Solana summary")
	return s
}

func TestLegacyVector(t *testing.T) {
	v := loadLegacy(t)
	pub := pubOf(v.signer)
	require.Equal(t, unhex(t, v.SignerPubHex), pub)

	resp, err := sol.SignMessage(v.signer, pub, v.message)
	require.NoError(t, err)
	assert.Equal(t, v.SignatureHex, hex.EncodeToString(resp.GetSignature()))
	assert.Equal(t, v.SignatureB58, base58.Encode(resp.GetSignature()))
	assert.Equal(t, v.WireHex, hex.EncodeToString(resp.GetSignedPayload()))
	assert.Equal(t, v.WireBase64, base64.StdEncoding.EncodeToString(resp.GetSignedPayload()))
	assert.True(t, ed25519.Verify(pub, v.message, resp.GetSignature()))
	assert.Empty(t, resp.GetKeyId())
	assert.Equal(t, signerv1.Algorithm_ALGORITHM_UNSPECIFIED, resp.GetAlgorithm())

	want := &signerv1.SolanaSummary{
		Version:            "legacy",
		FeePayer:           v.SignerPubB58,
		Signer:             v.SignerPubB58,
		RecentBlockhash:    v.BlockhashB58,
		RequiredSignatures: 1,
		ProgramIds:         []string{systemProgramB58},
		Transfers:          []*signerv1.SolanaTransfer{{From: v.SignerPubB58, To: v.RecipientB58, Lamports: v.Lamports}},
	}
	got := solanaSummary(t, resp)
	assert.True(t, proto.Equal(want, got), "summary:\n got %v\nwant %v", got, want)
}

func TestAddress(t *testing.T) {
	v := loadLegacy(t)
	addr, err := sol.Address(unhex(t, v.SignerPubHex))
	require.NoError(t, err)
	assert.Equal(t, v.SignerPubB58, addr)

	addr, err = sol.Address(make([]byte, 32))
	require.NoError(t, err)
	assert.Equal(t, systemProgramB58, addr)

	for _, k := range rfcKeys(t) {
		addr, err := sol.Address(pubOf(k))
		require.NoError(t, err)
		back, err := base58.Decode(addr)
		require.NoError(t, err)
		assert.Equal(t, pubOf(k), back)
	}

	for _, n := range []int{0, 31, 33, 65} {
		_, err := sol.Address(make([]byte, n))
		assert.Error(t, err, "%d-byte key", n)
	}
}

// systemData builds System Program instruction data: tag, lamports, rest.
func systemData(tag uint32, lamports uint64, extra ...byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, tag)
	b = binary.LittleEndian.AppendUint64(b, lamports)
	return append(b, extra...)
}

func filled(c byte) []byte { return bytes.Repeat([]byte{c}, 32) }

// v0Message is a v0 message with two required signers (fee payer, then
// signer), a lookup table, System Program transfers to static and looked-up
// accounts, and a call to another program.
//
// Account index space: 0 payer, 1 signer, 2 recipient, 3 system program,
// 4 other program (static); 5, 6 writable lookups (table A #7, #9), 7
// writable lookup (table B #0); 8 read-only lookup (table A #2).
func v0Message(payer, signer []byte) *sol.Message {
	tableA, tableB := filled(0xaa), filled(0xbb)
	seedData := binary.LittleEndian.AppendUint64(nil, 4)
	seedData = append(append(seedData, "seed"...), filled(0x77)...)
	return &sol.Message{
		Version:               sol.V0,
		NumRequiredSignatures: 2,
		NumReadonlySigned:     0,
		NumReadonlyUnsigned:   2,
		Keys:                  [][]byte{payer, signer, filled(0x11), make([]byte, 32), filled(0x22)},
		RecentBlockhash:       filled(0x99),
		Instructions: []sol.Instruction{
			{ProgramIndex: 3, Accounts: []byte{1, 2}, Data: systemData(2, 1_000_000)},
			{ProgramIndex: 4, Accounts: []byte{1, 8, 5}, Data: []byte{1, 2, 3}},
			{ProgramIndex: 3, Accounts: []byte{1, 5}, Data: systemData(2, 1<<63)},
			{ProgramIndex: 3, Accounts: []byte{7, 1, 6}, Data: systemData(11, 42, seedData...)},
			// Not transfers: another instruction, short data, too few accounts.
			{ProgramIndex: 3, Accounts: []byte{1, 2}, Data: systemData(0, 5)},
			{ProgramIndex: 3, Accounts: []byte{1, 2}, Data: systemData(2, 5)[:11]},
			{ProgramIndex: 3, Accounts: []byte{1}, Data: systemData(2, 5)},
		},
		AddressTableLookups: []sol.Lookup{
			{Table: tableA, Writable: []byte{7, 9}, Readonly: []byte{2}},
			{Table: tableB, Writable: []byte{0}},
		},
	}
}

func TestV0(t *testing.T) {
	keys := rfcKeys(t)
	payer, signer := keys[0], keys[1]
	m := v0Message(pubOf(payer), pubOf(signer))
	msg := m.Encode()
	require.Equal(t, byte(0x80), msg[0])

	resp, err := sol.SignMessage(signer, pubOf(signer), msg)
	require.NoError(t, err)
	sig := resp.GetSignature()
	require.Len(t, sig, 64)
	assert.True(t, ed25519.Verify(pubOf(signer), msg, sig))

	// Wire: 2 signature slots, the fee payer's still empty, ours second.
	wire := resp.GetSignedPayload()
	want := append(append(append([]byte{2}, make([]byte, 64)...), sig...), msg...)
	assert.Equal(t, want, wire)

	a := func(idx int) string { return fmt.Sprintf("lookup:%s#%d", base58.Encode(filled(0xaa)), idx) }
	b0 := fmt.Sprintf("lookup:%s#0", base58.Encode(filled(0xbb)))
	signerB58, recipient := base58.Encode(pubOf(signer)), base58.Encode(filled(0x11))
	wantSummary := &signerv1.SolanaSummary{
		Version:            "v0",
		FeePayer:           base58.Encode(pubOf(payer)),
		Signer:             signerB58,
		RecentBlockhash:    base58.Encode(filled(0x99)),
		RequiredSignatures: 2,
		ProgramIds:         []string{systemProgramB58, base58.Encode(filled(0x22))},
		Transfers: []*signerv1.SolanaTransfer{
			{From: signerB58, To: recipient, Lamports: 1_000_000},
			{From: signerB58, To: a(7), Lamports: 1 << 63},
			{From: b0, To: a(9), Lamports: 42},
		},
		AddressTableLookups: 2,
		UndescribedInstructions: []string{
			"1:" + base58.Encode(filled(0x22)), "4:" + systemProgramB58, "5:" + systemProgramB58, "6:" + systemProgramB58,
		},
	}
	got := solanaSummary(t, resp)
	assert.True(t, proto.Equal(wantSummary, got), "summary:\n got %v\nwant %v", got, wantSummary)

	// The fee payer signs the same message in slot 0.
	resp, err = sol.SignMessage(payer, pubOf(payer), msg)
	require.NoError(t, err)
	assert.Equal(t, resp.GetSignature(), resp.GetSignedPayload()[1:65])
	assert.Equal(t, make([]byte, 64), resp.GetSignedPayload()[65:129])
	assert.Equal(t, base58.Encode(pubOf(payer)), solanaSummary(t, resp).GetSigner())
}

func TestDecodeIsCanonical(t *testing.T) {
	v := loadLegacy(t)
	keys := rfcKeys(t)
	for _, msg := range [][]byte{v.message, v0Message(pubOf(keys[0]), pubOf(keys[1])).Encode()} {
		m, err := sol.Decode(msg)
		require.NoError(t, err)
		assert.Equal(t, msg, m.Encode())
	}
}

func TestSignMessageBadKey(t *testing.T) {
	v := loadLegacy(t)
	pub := pubOf(v.signer)
	other := rfcKeys(t)[0]
	tests := []struct {
		name      string
		priv, pub []byte
	}{
		{"short public key", v.signer, pub[:31]},
		{"short private key", v.signer[:32], pub},
		{"private key of another public key", other, pub},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sol.SignMessage(tt.priv, tt.pub, v.message)
			require.ErrorIs(t, err, sign.ErrInvalidKey)
			assert.NotErrorIs(t, err, sign.ErrInvalidPayload)
		})
	}
}

// TestSystemInstructionsThatMoveLamports: CreateAccount, CreateAccountWithSeed
// and WithdrawNonceAccount move lamports like a transfer and are listed as
// such; Assign (which hands the account to another program) is listed as
// undescribed, so a policy that judges transfers sees it.
func TestSystemInstructionsThatMoveLamports(t *testing.T) {
	keys := rfcKeys(t)
	signer := keys[1]
	owner := filled(0x33)
	create := append(systemData(0, 5_000_000_000), append(make([]byte, 8), owner...)...)
	seed := []byte("vault")
	withSeed := binary.LittleEndian.AppendUint32(nil, 3)
	withSeed = append(withSeed, filled(0x44)...)
	withSeed = binary.LittleEndian.AppendUint64(withSeed, uint64(len(seed)))
	withSeed = append(withSeed, seed...)
	withSeed = binary.LittleEndian.AppendUint64(withSeed, 77)
	withSeed = append(append(withSeed, make([]byte, 8)...), owner...)
	assign := append(binary.LittleEndian.AppendUint32(nil, 1), owner...)
	m := sol.Message{
		NumRequiredSignatures: 2,
		NumReadonlyUnsigned:   1,
		Keys:                  [][]byte{pubOf(signer), filled(0x11), filled(0x12), make([]byte, 32)},
		RecentBlockhash:       filled(0x99),
		Instructions: []sol.Instruction{
			{ProgramIndex: 3, Accounts: []byte{0, 1}, Data: create},
			{ProgramIndex: 3, Accounts: []byte{0, 2}, Data: withSeed},
			{ProgramIndex: 3, Accounts: []byte{2, 0}, Data: systemData(5, 9)},
			{ProgramIndex: 3, Accounts: []byte{0}, Data: assign},
		},
	}
	resp, err := sol.SignMessage(signer, pubOf(signer), m.Encode())
	require.NoError(t, err)
	got := solanaSummary(t, resp)
	me, a, b := base58.Encode(pubOf(signer)), base58.Encode(filled(0x11)), base58.Encode(filled(0x12))
	require.Len(t, got.GetTransfers(), 3)
	assert.True(t, proto.Equal(&signerv1.SolanaTransfer{From: me, To: a, Lamports: 5_000_000_000}, got.GetTransfers()[0]))
	assert.True(t, proto.Equal(&signerv1.SolanaTransfer{From: me, To: b, Lamports: 77}, got.GetTransfers()[1]))
	assert.True(t, proto.Equal(&signerv1.SolanaTransfer{From: b, To: me, Lamports: 9}, got.GetTransfers()[2]))
	assert.Equal(t, []string{"3:" + systemProgramB58}, got.GetUndescribedInstructions())
}
