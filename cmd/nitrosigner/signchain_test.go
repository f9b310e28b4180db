package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// chainFake is fakeSigner answering every Sign call with a canned chain
// response (its key id set to the request's).
type chainFake struct {
	*fakeSigner
	resp *signerv1.SignResponse
}

func newChainFake(resp *signerv1.SignResponse) *chainFake {
	return &chainFake{fakeSigner: newFakeSigner(), resp: resp}
}

func (f *chainFake) Sign(ctx context.Context, req *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	if err := f.enter(ctx, "Sign"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSign = req
	if _, ok := f.keys[req.GetKeyId()]; !ok {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	r := proto.Clone(f.resp).(*signerv1.SignResponse)
	r.KeyId = req.GetKeyId()
	return r, nil
}

func (f *chainFake) last() *signerv1.SignRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastSign
}

// Payloads: the EIP-155 example's signing data, the web3.js Solana
// transfer message (as in enclave/internal/chain/sol/testdata) and a PSBT
// header (the CLI only checks the magic).
const (
	eip155RLP  = "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
	solanaMsg  = "010001031398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93cafd439fccb66727f289c5c6de3bc4a8fe5dd5d77770bc8ff15c3eeedcb14af3fc0000000000000000000000000000000000000000000000000000000000000000c49ae77603782054f17a9decea43b444eba0edb12c6f1d31c6e0e4a84bf052eb01020200010c020000003100000000000000"
	psbtSample = "psbt\xff\x01\x00\x0a\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	typedData  = `{"types":{"EIP712Domain":[]},"primaryType":"EIP712Domain","domain":{},"message":{}}`
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// writeTemp writes content to a new file and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// setStdin makes --file - read content for the rest of the test.
func setStdin(t *testing.T, content string) {
	t.Helper()
	chainStdin = strings.NewReader(content)
	t.Cleanup(func() { chainStdin = os.Stdin })
}

func TestSignChainRequests(t *testing.T) {
	sighash := strings.Repeat("5a", 32)
	root := strings.Repeat("07", 32)
	tests := []struct {
		name    string
		args    []string // after "sign"; FILE stands for the payload file
		content string
		want    *signerv1.SignRequest
	}{
		{
			name: "eth-tx hex", args: []string{"eth-tx", "--key", keySecp, "--file", "FILE"},
			content: "  0x" + strings.ToUpper(eip155RLP) + "\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_EthTransaction{
				EthTransaction: &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: mustHex(t, eip155RLP)}},
			}},
		},
		{
			name: "eth-tx json", args: []string{"eth-tx", "--key", keySecp, "--file", "FILE"},
			content: `{"type": 2, "chain_id": "1", "nonce": "0x9", "max_priority_fee_per_gas": "1000000000",
				"max_fee_per_gas": "30000000000", "gas": "21000", "to": "0x3535353535353535353535353535353535353535",
				"value": "1000000000000000000000000", "data": "0xa9059cbb",
				"access_list": [{"address": "0x000000000000000000000000000000000000aaaa", "storage_keys": ["0x01"]}]}` + "\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_EthTransaction{
				EthTransaction: &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{
					Type: 2, ChainId: "1", Nonce: "0x9", MaxPriorityFeePerGas: "1000000000", MaxFeePerGas: "30000000000",
					Gas: "21000", To: "0x3535353535353535353535353535353535353535", Value: "1000000000000000000000000",
					Data: "0xa9059cbb",
					AccessList: []*signerv1.EthAccessTuple{{
						Address: "0x000000000000000000000000000000000000aaaa", StorageKeys: []string{"0x01"},
					}},
				}}},
			}},
		},
		{
			name: "eth-message raw keeps every byte", args: []string{"eth-message", "--key", keySecp, "--file", "FILE"},
			content: "Some data\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_EthPersonalMessage{
				EthPersonalMessage: []byte("Some data\n"),
			}},
		},
		{
			name: "eth-message hex", args: []string{"eth-message", "--key", keySecp, "--hex", "--file", "FILE"},
			content: "0x536f6d652064617461\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_EthPersonalMessage{
				EthPersonalMessage: []byte("Some data"),
			}},
		},
		{
			name: "eth-typed-data", args: []string{"eth-typed-data", "--key", keySecp, "--file", "FILE"},
			content: typedData + "\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_EthTypedDataJson{
				EthTypedDataJson: typedData + "\n",
			}},
		},
		{
			name: "psbt binary, mainnet by default", args: []string{"psbt", "--key", keySecp, "--file", "FILE"},
			content: psbtSample,
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{
				Psbt: []byte(psbtSample), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET,
			}}},
		},
		{
			name: "psbt base64 testnet", args: []string{"psbt", "--key", keySecp, "--network", "testnet", "--file", "FILE"},
			content: base64.StdEncoding.EncodeToString([]byte(psbtSample))[:12] + "\n" +
				base64.StdEncoding.EncodeToString([]byte(psbtSample))[12:] + "\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{
				Psbt: []byte(psbtSample), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_TESTNET,
			}}},
		},
		{
			name: "psbt hex regtest", args: []string{"psbt", "--key", keySecp, "--network", "regtest", "--file", "FILE"},
			content: strings.ToUpper(hex.EncodeToString([]byte(psbtSample))) + "\n",
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{
				Psbt: []byte(psbtSample), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST,
			}}},
		},
		{
			name: "solana raw", args: []string{"solana", "--key", keyEd, "--file", "FILE"},
			content: string(mustHex(t, solanaMsg)),
			want:    &signerv1.SignRequest{KeyId: keyEd, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: mustHex(t, solanaMsg)}},
		},
		{
			name: "solana base64", args: []string{"solana", "--key", keyEd, "--encoding", "base64", "--file", "FILE"},
			content: base64.StdEncoding.EncodeToString(mustHex(t, solanaMsg)) + "\n",
			want:    &signerv1.SignRequest{KeyId: keyEd, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: mustHex(t, solanaMsg)}},
		},
		{
			name: "solana hex", args: []string{"solana", "--key", keyEd, "--encoding", "hex", "--file", "FILE"},
			content: solanaMsg + "\n",
			want:    &signerv1.SignRequest{KeyId: keyEd, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: mustHex(t, solanaMsg)}},
		},
		{
			name: "btc-sighash ecdsa defaults to SIGHASH_ALL",
			args: []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "ecdsa"},
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: &signerv1.BitcoinSighash{
				Sighash: mustHex(t, sighash), Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 1,
			}}},
		},
		{
			name: "btc-sighash ecdsa with a type",
			args: []string{"btc-sighash", "--key", keySecp, "--sighash", "0x" + sighash, "--scheme", "ecdsa", "--sighash-type", "0x81"},
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: &signerv1.BitcoinSighash{
				Sighash: mustHex(t, sighash), Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 0x81,
			}}},
		},
		{
			name: "btc-sighash schnorr defaults to SIGHASH_DEFAULT",
			args: []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "schnorr", "--taproot-tweak"},
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: &signerv1.BitcoinSighash{
				Sighash: mustHex(t, sighash), Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, TaprootTweak: true,
			}}},
		},
		{
			name: "btc-sighash schnorr with merkle root",
			args: []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "SCHNORR",
				"--sighash-type", "3", "--taproot-tweak", "--merkle-root", root},
			want: &signerv1.SignRequest{KeyId: keySecp, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: &signerv1.BitcoinSighash{
				Sighash: mustHex(t, sighash), Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, SighashType: 3,
				TaprootTweak: true, TaprootMerkleRoot: mustHex(t, root),
			}}},
		},
	}
	for _, tt := range tests {
		sources := []string{"file", "stdin"}
		if !strings.Contains(strings.Join(tt.args, " "), "FILE") {
			sources = []string{"flags"}
		}
		for _, source := range sources {
			t.Run(tt.name+" from "+source, func(t *testing.T) {
				args := append([]string(nil), tt.args...)
				for i, a := range args {
					if a != "FILE" {
						continue
					}
					if source == "stdin" {
						args[i] = "-"
						setStdin(t, tt.content)
					} else {
						args[i] = writeTemp(t, tt.content)
					}
				}
				fake := newChainFake(&signerv1.SignResponse{})
				addr := startServer(t, fake)
				code, _, stderr := runCLI(t, append([]string{"--addr", addr, "sign"}, args...)...)
				require.Equal(t, 0, code, stderr)
				assert.Equal(t, []string{"Sign"}, fake.Calls())
				got := fake.last()
				assert.True(t, proto.Equal(tt.want, got), "request:\n got %v\nwant %v", got, tt.want)
			})
		}
	}
}

// Canned answers, shaped like the enclave's.
var (
	ethTxResponse = &signerv1.SignResponse{
		Algorithm:     signerv1.Algorithm_ALGORITHM_SECP256K1,
		SignedPayload: []byte{0xf8, 0x6c, 0x09},
		TxHash:        bytes.Repeat([]byte{0x33}, 32),
		EthSignature:  &signerv1.EthSignature{V: 37, R: bytes.Repeat([]byte{0x28}, 32), S: bytes.Repeat([]byte{0x67}, 32)},
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Ethereum{Ethereum: &signerv1.EthSummary{
			Kind: "transaction", ChainId: "1", From: "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F",
			To: "0x3535353535353535353535353535353535353535", Value: "1000000000000000000", Nonce: 9, GasLimit: 21000,
			GasPrice: "20000000000", Digest: []byte{0xda, 0xf5},
		}}},
	}
	ethMessageResponse = &signerv1.SignResponse{
		Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1,
		Signature: append(bytes.Repeat([]byte{0xb9}, 64), 0x1c),
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Ethereum{Ethereum: &signerv1.EthSummary{
			Kind: "personal_message", From: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", MessageLength: 9,
		}}},
	}
	psbtResponse = &signerv1.SignResponse{
		Algorithm:     signerv1.Algorithm_ALGORITHM_SECP256K1,
		SignedPayload: []byte(psbtSample),
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Bitcoin{Bitcoin: &signerv1.BitcoinSummary{
			Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_TESTNET,
			Inputs: []*signerv1.BitcoinInput{{
				Txid: strings.Repeat("ab", 32), Vout: 1, Amount: 2_100_000_000_000_000, Address: "tb1qexample",
				ScriptType: "p2wpkh", Signed: true, SighashType: 1,
			}},
			Outputs:     []*signerv1.BitcoinOutput{{Script: []byte{0x6a, 0x01, 0x02}, Amount: 1000}},
			TotalInput:  2_100_000_000_000_000,
			TotalOutput: 1000, Fee: 2_099_999_999_999_000, SignedInputs: 1,
		}}},
	}
	solanaResponse = &signerv1.SignResponse{
		Algorithm:     signerv1.Algorithm_ALGORITHM_ED25519,
		Signature:     mustHexVar("5b84ad01da5efd121b4fcf721ba77f11cab7cc0c45f319cea574b640b9a8eea8c18c56536bfcef50285b2c06a0542be33faaffb984f2522e7cd97f9318fe9d0d"),
		SignedPayload: []byte{1, 2, 3},
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Solana{Solana: &signerv1.SolanaSummary{
			Version: "legacy", FeePayer: "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1", Signer: "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1",
			RecentBlockhash: "EETubP5AKHgjPAhzPAFcb8BAY1hMH639CWCFTqi3hq1k", RequiredSignatures: 1,
			ProgramIds: []string{"11111111111111111111111111111111"},
			Transfers: []*signerv1.SolanaTransfer{{
				From: "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1", To: "J3dxNj7nDRRqRRXuEMynDG57DkZK4jYRuv3Garmb1i99",
				Lamports: 1<<64 - 1,
			}},
		}}},
	}
	btcSighashResponse = &signerv1.SignResponse{
		Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1,
		Signature: bytes.Repeat([]byte{0xee}, 64),
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Bitcoin{Bitcoin: &signerv1.BitcoinSummary{
			Scheme: "schnorr_taproot:DEFAULT",
		}}},
	}
)

func mustHexVar(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestSignChainJSON(t *testing.T) {
	tests := []struct {
		name    string
		args    []string // after "sign"; FILE stands for the payload file
		content string
		resp    *signerv1.SignResponse
		want    map[string]any
		wantRaw []string // substrings of stdout (exact integers)
	}{
		{
			name: "eth-tx", args: []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, content: eip155RLP,
			resp: ethTxResponse,
			want: map[string]any{
				"key_id": keySecp, "signed_tx": "0xf86c09", "tx_hash": "0x" + strings.Repeat("33", 32),
				"v": float64(37), "r": "0x" + strings.Repeat("28", 32), "s": "0x" + strings.Repeat("67", 32),
				"summary": map[string]any{
					"kind": "transaction", "chain_id": "1", "from": "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F",
					"to": "0x3535353535353535353535353535353535353535", "value": "1000000000000000000",
					"nonce": float64(9), "gas_limit": float64(21000), "gas_price": "20000000000", "digest": "0xdaf5",
				},
			},
			wantRaw: []string{`"v": 37`, `"nonce": 9,`},
		},
		{
			name: "eth-message", args: []string{"eth-message", "--key", keySecp, "--file", "FILE"}, content: "Some data",
			resp: ethMessageResponse,
			want: map[string]any{
				"key_id": keySecp, "signature": "0x" + strings.Repeat("b9", 64) + "1c",
				"summary": map[string]any{
					"kind": "personal_message", "from": "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", "message_length": float64(9),
				},
			},
		},
		{
			name: "eth-typed-data", args: []string{"eth-typed-data", "--key", keySecp, "--file", "FILE"}, content: typedData,
			resp: ethMessageResponse,
			want: map[string]any{
				"key_id": keySecp, "signature": "0x" + strings.Repeat("b9", 64) + "1c",
				"summary": map[string]any{
					"kind": "personal_message", "from": "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", "message_length": float64(9),
				},
			},
		},
		{
			name: "psbt", args: []string{"psbt", "--key", keySecp, "--file", "FILE"}, content: psbtSample,
			resp: psbtResponse,
			want: map[string]any{
				"key_id": keySecp, "psbt": base64.StdEncoding.EncodeToString([]byte(psbtSample)),
				"summary": map[string]any{
					"network": "testnet",
					"inputs": []any{map[string]any{
						"txid": strings.Repeat("ab", 32), "vout": float64(1), "amount": float64(2_100_000_000_000_000),
						"address": "tb1qexample", "script_type": "p2wpkh", "signed": true, "sighash_type": float64(1),
					}},
					"outputs":      []any{map[string]any{"script": "6a0102", "amount": float64(1000)}},
					"total_input":  float64(2_100_000_000_000_000),
					"total_output": float64(1000), "fee": float64(2_099_999_999_999_000), "signed_inputs": float64(1),
				},
			},
			wantRaw: []string{`"amount": 2100000000000000,`, `"fee": 2099999999999000,`},
		},
		{
			name: "solana", args: []string{"solana", "--key", keyEd, "--file", "FILE"}, content: string(mustHex(t, solanaMsg)),
			resp: solanaResponse,
			want: map[string]any{
				"key_id":           keyEd,
				"signature":        "5b84ad01da5efd121b4fcf721ba77f11cab7cc0c45f319cea574b640b9a8eea8c18c56536bfcef50285b2c06a0542be33faaffb984f2522e7cd97f9318fe9d0d",
				"signature_base58": "2q8Fs6wmDHcdNKJnVJoXYnDVqrWm8GYsxYt2QwUPvadkEQXinWJRwWVzxdUmJY9YH8iZETcXjk3ZdBcDUkuUtfKz",
				"signed_tx":        "AQID",
				"summary": map[string]any{
					"version": "legacy", "fee_payer": "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1",
					"signer": "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1", "recent_blockhash": "EETubP5AKHgjPAhzPAFcb8BAY1hMH639CWCFTqi3hq1k",
					"required_signatures": float64(1), "program_ids": []any{"11111111111111111111111111111111"},
					"transfers": []any{map[string]any{
						"from": "2KW2XRd9kwqet15Aha2oK3tYvd3nWbTFH1MBiRAv1BE1", "to": "J3dxNj7nDRRqRRXuEMynDG57DkZK4jYRuv3Garmb1i99",
						"lamports": float64(1<<64 - 1),
					}},
				},
			},
			// The largest u64, exact (a float64 would print 18446744073709552000).
			wantRaw: []string{`"lamports": 18446744073709551615`},
		},
		{
			name: "btc-sighash", args: []string{"btc-sighash", "--key", keySecp, "--sighash", strings.Repeat("00", 32), "--scheme", "schnorr"},
			resp: btcSighashResponse,
			want: map[string]any{
				"key_id": keySecp, "signature": strings.Repeat("ee", 64),
				"summary": map[string]any{"scheme": "schnorr_taproot:DEFAULT"},
			},
		},
		{
			name: "no summary", args: []string{"solana", "--key", keyEd, "--file", "FILE"}, content: "x",
			resp: &signerv1.SignResponse{Signature: []byte{1}, SignedPayload: []byte{2}},
			want: map[string]any{
				"key_id": keyEd, "signature": "01", "signature_base58": "2", "signed_tx": "Ag==", "summary": nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "FILE" {
					args[i] = writeTemp(t, tt.content)
				}
			}
			addr := startServer(t, newChainFake(tt.resp))
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "--json", "sign"}, args...)...)
			require.Equal(t, 0, code, stderr)
			assert.Empty(t, stderr)
			assert.Equal(t, tt.want, decodeOne(t, stdout))
			for _, s := range tt.wantRaw {
				assert.Contains(t, stdout, s)
			}
		})
	}
}

func TestSignChainJSONKeepsFieldOrder(t *testing.T) {
	addr := startServer(t, newChainFake(ethTxResponse))
	code, stdout, stderr := runCLI(t, "--addr", addr, "--json", "sign", "eth-tx", "--key", keySecp, "--file", writeTemp(t, eip155RLP))
	require.Equal(t, 0, code, stderr)
	rest := stdout
	for _, name := range []string{"key_id", "signed_tx", "tx_hash", "v", "r", "s", "summary",
		"kind", "chain_id", "from", "to", "value", "nonce", "gas_limit", "gas_price", "digest"} {
		i := strings.Index(rest, `"`+name+`":`)
		require.GreaterOrEqual(t, i, 0, "%s missing or out of order", name)
		rest = rest[i:]
	}
}

func TestSignChainText(t *testing.T) {
	tests := []struct {
		name string
		args []string
		resp *signerv1.SignResponse
		want []string // regular expressions stdout must match
	}{
		{
			name: "solana", args: []string{"solana", "--key", keyEd, "--encoding", "hex", "--file", "FILE"},
			resp: solanaResponse,
			want: []string{
				`(?m)^key_id:\s+` + keyEd + `$`,
				`(?m)^signature:\s+5b84ad01`,
				`(?m)^signature_base58:\s+2q8Fs6wmDHcdNKJnVJoXYnDVqrWm8GYsxYt2QwUPvadkEQXinWJRwWVzxdUmJY9YH8iZETcXjk3ZdBcDUkuUtfKz$`,
				`(?m)^signed_tx:\s+AQID$`,
				`(?m)^summary\.version:\s+legacy$`,
				`(?m)^summary\.program_ids\[0\]:\s+11111111111111111111111111111111$`,
				`(?m)^summary\.transfers\[0\]\.to:\s+J3dxNj7nDRRqRRXuEMynDG57DkZK4jYRuv3Garmb1i99$`,
				`(?m)^summary\.transfers\[0\]\.lamports:\s+18446744073709551615$`,
			},
		},
		{
			name: "eth-tx", args: []string{"eth-tx", "--key", keySecp, "--file", "FILE"},
			resp: ethTxResponse,
			want: []string{
				`(?m)^signed_tx:\s+0xf86c09$`,
				`(?m)^v:\s+37$`,
				`(?m)^r:\s+0x(28){32}$`,
				`(?m)^summary\.nonce:\s+9$`,
				`(?m)^summary\.digest:\s+0xdaf5$`,
			},
		},
		{
			name: "psbt", args: []string{"psbt", "--key", keySecp, "--file", "FILE"},
			resp: psbtResponse,
			want: []string{
				`(?m)^psbt:\s+cHNidP8B`,
				`(?m)^summary\.network:\s+testnet$`,
				`(?m)^summary\.inputs\[0\]\.signed:\s+true$`,
				`(?m)^summary\.outputs\[0\]\.script:\s+6a0102$`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := map[string]string{"solana": solanaMsg, "eth-tx": eip155RLP, "psbt": psbtSample}[tt.args[0]]
			args := append([]string(nil), tt.args...)
			args[len(args)-1] = writeTemp(t, content)
			addr := startServer(t, newChainFake(tt.resp))
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "sign"}, args...)...)
			require.Equal(t, 0, code, stderr)
			for _, re := range tt.want {
				assert.Regexp(t, re, stdout)
			}
		})
	}
}

func TestSignChainTextIsPrintable(t *testing.T) {
	resp := proto.Clone(solanaResponse).(*signerv1.SignResponse)
	resp.GetSummary().GetSolana().FeePayer = "evil\x1b[2J"
	addr := startServer(t, newChainFake(resp))
	code, stdout, _ := runCLI(t, "--addr", addr, "sign", "solana", "--key", keyEd, "--file", writeTemp(t, "x"))
	require.Equal(t, 0, code)
	assert.NotContains(t, stdout, "\x1b")
	assert.Contains(t, stdout, `"evil\x1b[2J"`)
}

func TestSignChainErrors(t *testing.T) {
	sighash := strings.Repeat("00", 32)
	tests := []struct {
		name       string
		args       []string // after "sign"; FILE stands for a file holding content
		content    string
		wantCode   int
		wantStderr []string
	}{
		{"eth-tx without key", []string{"eth-tx", "--file", "FILE"}, eip155RLP, 2,
			[]string{"--key is required", "usage: nitrosigner [global flags] sign eth-tx --key ID --file PATH"}},
		{"eth-tx without file", []string{"eth-tx", "--key", keySecp}, "", 2,
			[]string{"--file is required (- reads standard input)"}},
		{"missing file", []string{"eth-tx", "--key", keySecp, "--file", "/nonexistent/tx"}, "", 2,
			[]string{"--file: open /nonexistent/tx: no such file or directory"}},
		{"empty file", []string{"solana", "--key", keyEd, "--file", "FILE"}, "", 2,
			[]string{"--file: ", "is empty"}},
		{"empty stdin", []string{"solana", "--key", keyEd, "--file", "-"}, "", 2,
			[]string{"--file: standard input is empty"}},
		{"eth-tx bad hex", []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, "0xzz", 2,
			[]string{"--file: want the unsigned transaction in hex or a JSON object of its fields: not valid hex: invalid byte"}},
		{"eth-tx odd hex", []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, "abc\n", 2,
			[]string{"not valid hex: odd length hex string"}},
		{"eth-tx unknown JSON field", []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, `{"chain_id": "1", "gasLimit": "21000"}`, 2,
			[]string{"--file: transaction JSON: ", `unknown field "gasLimit"`}},
		{"eth-tx duplicate JSON field", []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, `{"nonce": "1", "nonce": "2"}`, 2,
			[]string{"--file: transaction JSON: ", `duplicate field "nonce"`}},
		{"eth-tx JSON number for a quantity", []string{"eth-tx", "--key", keySecp, "--file", "FILE"}, `{"nonce": 9}`, 2,
			[]string{"--file: transaction JSON: ", "nonce"}},
		{"eth-tx extra argument", []string{"eth-tx", "--key", keySecp, "--file", "FILE", "more"}, eip155RLP, 2,
			[]string{`unexpected argument "more"`}},
		{"eth-tx unknown flag", []string{"eth-tx", "--frob"}, "", 2,
			[]string{"flag provided but not defined: -frob", "usage: nitrosigner [global flags] sign eth-tx"}},
		{"eth-message bad hex", []string{"eth-message", "--key", keySecp, "--hex", "--file", "FILE"}, "hello", 2,
			[]string{"--file: not valid hex"}},
		{"eth-message hex without digits", []string{"eth-message", "--key", keySecp, "--hex", "--file", "FILE"}, "0x\n", 2,
			[]string{"--file: no hex digits"}},
		{"eth-typed-data not JSON", []string{"eth-typed-data", "--key", keySecp, "--file", "FILE"}, `{"types": `, 2,
			[]string{"--file: typed data is not valid JSON"}},
		{"eth-typed-data not UTF-8", []string{"eth-typed-data", "--key", keySecp, "--file", "FILE"}, "{\"a\": \"\xff\"}", 2,
			[]string{"--file: typed data is not UTF-8 text"}},
		{"psbt not a PSBT", []string{"psbt", "--key", keySecp, "--file", "FILE"}, "hello", 2,
			[]string{`--file: not a PSBT: want binary (starting with "psbt\xff"), base64 ("cHNidP8...") or hex ("70736274ff...")`}},
		{"psbt bad base64", []string{"psbt", "--key", keySecp, "--file", "FILE"}, "cHNidP8!", 2,
			[]string{"--file: not valid base64: illegal base64 data at input byte 7"}},
		{"psbt bad hex", []string{"psbt", "--key", keySecp, "--file", "FILE"}, "70736274ff0", 2,
			[]string{"--file: not valid hex: odd length hex string"}},
		{"psbt unknown network", []string{"psbt", "--key", keySecp, "--network", "litecoin", "--file", "FILE"}, psbtSample, 2,
			[]string{`--network: unknown network "litecoin" (want mainnet, testnet or regtest)`}},
		{"solana unknown encoding", []string{"solana", "--key", keyEd, "--encoding", "base58", "--file", "FILE"}, "x", 2,
			[]string{`--encoding: unknown encoding "base58" (want raw, base64 or hex)`}},
		{"solana bad base64", []string{"solana", "--key", keyEd, "--encoding", "base64", "--file", "FILE"}, "AQI", 2,
			[]string{"--file: not valid base64"}},
		{"solana bad hex", []string{"solana", "--key", keyEd, "--encoding", "hex", "--file", "FILE"}, "0xgg", 2,
			[]string{"--file: not valid hex"}},
		{"btc-sighash without key", []string{"btc-sighash", "--sighash", sighash, "--scheme", "ecdsa"}, "", 2,
			[]string{"--key is required", "usage: nitrosigner [global flags] sign btc-sighash"}},
		{"btc-sighash without sighash", []string{"btc-sighash", "--key", keySecp, "--scheme", "ecdsa"}, "", 2,
			[]string{"--sighash is required"}},
		{"btc-sighash short", []string{"btc-sighash", "--key", keySecp, "--sighash", "0x0102", "--scheme", "ecdsa"}, "", 2,
			[]string{"--sighash is 2 bytes, want 32"}},
		{"btc-sighash bad hex", []string{"btc-sighash", "--key", keySecp, "--sighash", "xyz", "--scheme", "ecdsa"}, "", 2,
			[]string{"--sighash is not valid hex"}},
		{"btc-sighash without scheme", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash}, "", 2,
			[]string{"--scheme is required (ecdsa or schnorr)"}},
		{"btc-sighash unknown scheme", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "bls"}, "", 2,
			[]string{`--scheme: unknown scheme "bls" (want ecdsa or schnorr)`}},
		{"btc-sighash ecdsa with tweak", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "ecdsa", "--taproot-tweak"}, "", 2,
			[]string{"--taproot-tweak and --merkle-root apply to --scheme schnorr only"}},
		{"btc-sighash merkle root without tweak", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "schnorr", "--merkle-root", sighash}, "", 2,
			[]string{"--merkle-root needs --taproot-tweak"}},
		{"btc-sighash short merkle root", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "schnorr", "--taproot-tweak", "--merkle-root", "01"}, "", 2,
			[]string{"--merkle-root is 1 bytes, want 32"}},
		{"btc-sighash type over a byte", []string{"btc-sighash", "--key", keySecp, "--sighash", sighash, "--scheme", "ecdsa", "--sighash-type", "256"}, "", 2,
			[]string{"--sighash-type 256 does not fit in a byte"}},

		{"server error passes through", []string{"solana", "--key", "key_nope", "--file", "FILE"}, "x", 1,
			[]string{"nitrosigner: NotFound: key not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				switch a {
				case "FILE":
					args[i] = writeTemp(t, tt.content)
				case "-":
					setStdin(t, tt.content)
				}
			}
			fake := newChainFake(solanaResponse)
			addr := startServer(t, fake)
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "sign"}, args...)...)
			assert.Equal(t, tt.wantCode, code)
			assert.Empty(t, stdout)
			for _, s := range tt.wantStderr {
				assert.Contains(t, stderr, s)
			}
			if tt.wantCode == 2 {
				assert.Empty(t, fake.Calls(), "a usage error must not reach the server")
			}
		})
	}
}

func TestSignChainHelp(t *testing.T) {
	tests := map[string][]string{
		"eth-tx":         {"sign eth-tx --key ID --file PATH", "-key", "-file", "access_list"},
		"eth-message":    {"sign eth-message", "-hex"},
		"eth-typed-data": {"sign eth-typed-data", "eth_signTypedData_v4"},
		"psbt":           {"sign psbt", "-network"},
		"solana":         {"sign solana", "-encoding"},
		"btc-sighash":    {"sign btc-sighash", "-sighash", "-scheme", "-sighash-type", "-taproot-tweak", "-merkle-root"},
	}
	require.Len(t, tests, len(chainKinds))
	for kind, want := range tests {
		t.Run(kind, func(t *testing.T) {
			require.True(t, chainKinds[kind])
			code, stdout, stderr := runCLI(t, "sign", kind, "--help")
			assert.Equal(t, 0, code)
			assert.Empty(t, stderr)
			for _, s := range want {
				assert.Contains(t, stdout, s)
			}
		})
	}
}
