package verify_test

import (
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/verify"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(file, []byte(content), 0o644))
	return file
}

func TestParsePCRs(t *testing.T) {
	a, b := strings.Repeat("ab", 48), strings.Repeat("cd", 48)
	tests := []struct {
		name    string
		json    string
		want    map[int]string
		wantErr string
	}{
		{name: "measurements", json: fmt.Sprintf(`{"HashAlgorithm": "Sha384 { ... }", "PCR0": %q, "PCR8": %q}`, a, b), want: map[int]string{0: a, 8: b}},
		{name: "wrapped", json: fmt.Sprintf(`{"EnclaveName": "x", "Measurements": {"PCR2": %q}}`, a), want: map[int]string{2: a}},
		{name: "bare index", json: fmt.Sprintf(`{"0": %q, "31": %q}`, a, b), want: map[int]string{0: a, 31: b}},
		{name: "0x prefix and upper case", json: fmt.Sprintf(`{"pcr1": "0x%s"}`, strings.ToUpper(a)), want: map[int]string{1: a}},
		{name: "not json", json: `PCR0=ab`, wantErr: "not a JSON object"},
		{name: "measurements not an object", json: `{"Measurements": []}`, wantErr: `"Measurements" field is not a JSON object`},
		{name: "empty", json: `{}`, wantErr: "no PCR values"},
		{name: "unknown key", json: fmt.Sprintf(`{"PCRX": %q}`, a), wantErr: `unknown key "PCRX"`},
		{name: "signed index", json: fmt.Sprintf(`{"+1": %q}`, a), wantErr: `unknown key "+1"`},
		{name: "duplicate", json: fmt.Sprintf(`{"PCR0": %q, "0": %q}`, a, b), wantErr: "PCR0 given twice"},
		{name: "not a string", json: `{"PCR0": 1}`, wantErr: `"PCR0": want a string`},
		{name: "other hash", json: fmt.Sprintf(`{"HashAlgorithm": "Sha256", "PCR0": %q}`, a), wantErr: "not SHA-384"},
		{name: "short value", json: `{"PCR0": "abcd"}`, wantErr: "pcr0 is 2 bytes"},
		{name: "not hex", json: `{"PCR0": "zz"}`, wantErr: "pcr0"},
		{name: "index out of range", json: fmt.Sprintf(`{"PCR32": %q}`, a), wantErr: "32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verify.ParsePCRs([]byte(tt.json))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			want := make(map[int][]byte)
			for i, h := range tt.want {
				want[i], _ = hex.DecodeString(h)
			}
			assert.Equal(t, want, got)
		})
	}
}

func TestLoadPCRs(t *testing.T) {
	file := writeFile(t, "pcrs.json", `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "`+blockyPCR0+`"}}`)
	pcrs, err := verify.LoadPCRs(file)
	require.NoError(t, err)
	assert.Equal(t, map[int][]byte{0: mustHex(t, blockyPCR0)}, pcrs)

	// The loaded file pins the real document's image.
	_, err = verify.Verify(blocky.read(t), verify.Options{Now: blocky.at(0), PCRs: pcrs})
	require.NoError(t, err)

	_, err = verify.LoadPCRs(writeFile(t, "bad.json", `{"PCR0": "zz"}`))
	require.ErrorContains(t, err, "bad.json: ")
	_, err = verify.LoadPCRs(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = verify.LoadPCRs(writeFile(t, "big.json", strings.Repeat(" ", 1<<20+1)))
	require.ErrorContains(t, err, "larger than")
}

func TestLoadRoots(t *testing.T) {
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: verify.AWSRoot().Raw})
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("skipped")})

	roots, err := verify.LoadRoots(writeFile(t, "roots.pem", string(key)+string(root)+string(root)))
	require.NoError(t, err)
	require.Len(t, roots, 2)
	assert.Equal(t, verify.AWSRoot().Raw, roots[0].Raw)

	_, err = verify.LoadRoots(writeFile(t, "none.pem", string(key)))
	require.ErrorContains(t, err, "no PEM certificates")
	_, err = verify.LoadRoots(writeFile(t, "bad.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))))
	require.ErrorContains(t, err, "bad.pem: x509")
	_, err = verify.LoadRoots(filepath.Join(t.TempDir(), "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
