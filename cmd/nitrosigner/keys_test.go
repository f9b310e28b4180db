package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestHumanOutput(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		want      []string // regular expressions stdout must match
		wantCalls []string
	}{
		{
			name: "keys create",
			args: []string{"keys", "create", "--alg", "ed25519", "--label", "env=dev", "--label", "a=b=c"},
			want: []string{
				`(?m)^key_id:      key_0{31}4$`,
				`(?m)^algorithm:   ed25519$`,
				`(?m)^public_key:  ` + hex.EncodeToString(edPublicKey) + `$`,
				`(?m)^state:       enabled$`,
				`(?m)^created_at:  2023-11-14T22:13:20\.123Z$`,
				`(?m)^labels:      a=b=c, env=dev$`,
			},
			wantCalls: []string{"CreateKey"},
		},
		{
			name: "keys get",
			args: []string{"keys", "get", keySecp},
			want: []string{
				`(?m)^key_id:      ` + keySecp + `$`,
				`(?m)^algorithm:   secp256k1$`,
				`(?m)^public_key:  04(11){64}$`,
				`(?m)^labels:      env=prod, team=payments$`,
			},
			wantCalls: []string{"GetKey"},
		},
		{
			name: "keys list follows every page",
			args: []string{"keys", "list", "--page-size", "1"},
			want: []string{
				`(?m)^KEY_ID\s+ALGORITHM\s+STATE\s+CREATED_AT\s+PUBLIC_KEY\s+LABELS$`,
				`(?m)^` + keySecp + `\s+secp256k1\s+enabled\s+2023-11-14T22:13:20\.123Z\s+04(11){64}\s+env=prod,team=payments$`,
				`(?m)^` + keyEd + `\s+ed25519\s+enabled\s+`,
				`(?m)^` + keyDisabled + `\s+ed25519\s+disabled\s+`,
			},
			wantCalls: []string{"ListKeys", "ListKeys", "ListKeys"},
		},
		{
			name:      "sign digest",
			args:      []string{"sign", "--key", keySecp, "--digest", strings.Repeat("00", 32)},
			want:      []string{`(?m)^key_id:     ` + keySecp + `$`, `(?m)^algorithm:  secp256k1$`, `(?m)^signature:  (ab){65}$`},
			wantCalls: []string{"Sign"},
		},
		{
			name:      "sign message with 0x prefix",
			args:      []string{"sign", "--key", keyEd, "--message", "0x68656C6C6F"},
			want:      []string{`(?m)^algorithm:  ed25519$`, `(?m)^signature:  (cd){64}$`},
			wantCalls: []string{"Sign"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeSigner()
			addr := startServer(t, fake)
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr}, tt.args...)...)
			require.Equal(t, 0, code, stderr)
			assert.Empty(t, stderr)
			for _, re := range tt.want {
				assert.Regexp(t, re, stdout)
			}
			assert.Equal(t, tt.wantCalls, fake.Calls())
		})
	}
}

func TestRequests(t *testing.T) {
	fake := newFakeSigner()
	addr := startServer(t, fake)

	code, _, _ := runCLI(t, "--addr", addr, "keys", "create", "--alg", "SECP256K1", "--label", "k=v")
	require.Equal(t, 0, code)
	assert.Equal(t, signerv1.Algorithm_ALGORITHM_SECP256K1, fake.created.GetAlgorithm())
	assert.Equal(t, map[string]string{"k": "v"}, fake.created.GetLabels())

	code, _, _ = runCLI(t, "--addr", addr, "sign", "--key", keySecp, "--digest", "0X"+strings.Repeat("aB", 32))
	require.Equal(t, 0, code)
	assert.Equal(t, keySecp, fake.lastSign.GetKeyId())
	assert.Equal(t, []byte(strings.Repeat("\xab", 32)), fake.lastSign.GetDigest())
	assert.Nil(t, fake.lastSign.GetMessage())

	code, _, _ = runCLI(t, "--addr", addr, "sign", "--key", keyEd, "--message", "68656c6c6f")
	require.Equal(t, 0, code)
	assert.Equal(t, []byte("hello"), fake.lastSign.GetMessage())

	// A message at the size limit is too long for one command-line
	// argument in hex (Linux allows 128 KiB); --message-file reads it raw.
	long := make([]byte, 64<<10)
	for i := range long {
		long[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "msg.bin")
	require.NoError(t, os.WriteFile(path, long, 0o600))
	code, _, stderr := runCLI(t, "--addr", addr, "sign", "--key", keyEd, "--message-file", path)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, long, fake.lastSign.GetMessage())
	assert.Nil(t, fake.lastSign.GetDigest())

	chainStdin = strings.NewReader("from stdin\n")
	t.Cleanup(func() { chainStdin = os.Stdin })
	code, _, stderr = runCLI(t, "--addr", addr, "sign", "--key", keyEd, "--message-file", "-")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []byte("from stdin\n"), fake.lastSign.GetMessage())

	code, _, _ = runCLI(t, "--addr", addr, "keys", "list")
	require.Equal(t, 0, code)
	code, _, _ = runCLI(t, "--addr", addr, "keys", "list", "--page-size", "2")
	require.Equal(t, 0, code)
	assert.Equal(t, []int32{0, 2, 2}, fake.pageSizes)
}

func TestJSONOutput(t *testing.T) {
	keyFields := []string{"algorithm", "created_at_unix_ms", "key_id", "labels", "public_key", "state"}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, v map[string]any)
	}{
		{
			name: "keys create",
			args: []string{"keys", "create", "--alg", "secp256k1"},
			check: func(t *testing.T, v map[string]any) {
				// No labels: the field is omitted.
				assert.Equal(t, []string{"algorithm", "created_at_unix_ms", "key_id", "public_key", "state"}, keysOf(v))
				assert.Equal(t, "secp256k1", v["algorithm"])
				assert.Equal(t, hex.EncodeToString(secpPublicKey), v["public_key"])
				assert.Equal(t, "enabled", v["state"])
			},
		},
		{
			name: "keys get",
			args: []string{"keys", "get", keySecp},
			check: func(t *testing.T, v map[string]any) {
				assert.Equal(t, keyFields, keysOf(v))
				assert.Equal(t, keySecp, v["key_id"])
				assert.Equal(t, "secp256k1", v["algorithm"])
				assert.Equal(t, "04"+strings.Repeat("11", 64), v["public_key"])
				assert.Equal(t, "enabled", v["state"])
				assert.InDelta(t, float64(createdAtMs), v["created_at_unix_ms"], 0)
				assert.Equal(t, map[string]any{"env": "prod", "team": "payments"}, v["labels"])
			},
		},
		{
			name: "keys list",
			args: []string{"keys", "list", "--page-size", "2"},
			check: func(t *testing.T, v map[string]any) {
				assert.Equal(t, []string{"keys"}, keysOf(v))
				keys, ok := v["keys"].([]any)
				require.True(t, ok)
				require.Len(t, keys, 3)
				var ids []string
				for _, k := range keys {
					k := k.(map[string]any)
					ids = append(ids, k["key_id"].(string))
					assert.Subset(t, keyFields, keysOf(k))
				}
				assert.Equal(t, []string{keySecp, keyEd, keyDisabled}, ids)
				assert.Equal(t, "disabled", keys[2].(map[string]any)["state"])
				assert.Equal(t, "ed25519", keys[2].(map[string]any)["algorithm"])
			},
		},
		{
			name: "sign",
			args: []string{"sign", "--key", keySecp, "--digest", strings.Repeat("01", 32)},
			check: func(t *testing.T, v map[string]any) {
				assert.Equal(t, []string{"algorithm", "key_id", "signature"}, keysOf(v))
				assert.Equal(t, keySecp, v["key_id"])
				assert.Equal(t, "secp256k1", v["algorithm"])
				assert.Equal(t, hex.EncodeToString(secpSignature), v["signature"])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startServer(t, newFakeSigner())
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "--json"}, tt.args...)...)
			require.Equal(t, 0, code, stderr)
			tt.check(t, decodeOne(t, stdout))
		})
	}
}

func TestJSONEmptyList(t *testing.T) {
	fake := newFakeSigner()
	fake.keys = map[string]*signerv1.Key{}
	addr := startServer(t, fake)
	code, stdout, _ := runCLI(t, "--addr", addr, "--json", "keys", "list")
	require.Equal(t, 0, code)
	assert.Equal(t, map[string]any{"keys": []any{}}, decodeOne(t, stdout))
}
