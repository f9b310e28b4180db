package cms_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// vector describes one real KMS envelope in testdata/.
type vector struct {
	name        string
	rid         string // hex, from the shared test-vector README
	constructed bool   // encryptedContent in constructed (chunked) form
	keyed       bool   // NAME.key.pem and NAME.plaintext.hex exist
}

var vectors = []vector{
	{"edgebit_cfr", "9631a0c659910ad5aabc1fecfc0c3e64d4c395ce9491af3a48b56694d9851803", true, true},
	{"eks_ethsigner_cfr", "f3df0229506aacd7c3f14ed9a21666b3af1bb44bcc8aefda1ee9f1d2abe4da81", true, true},
	{"awssdkc_cms_vector1", "7087b55df94ba3255cdf3c01840a2aa3ec93620625d601cf56f97bde7a3d2eb1", true, false},
	{"awssdkc_cms_vector2_primitive_content", "4e61df69e443b8e25c8ae83318cfc72d9b6a5176d2167790fdf819c086e6967a", false, false},
}

// blob returns the vector's .cms bytes.
func (v vector) blob(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", v.name+".cms"))
	require.NoError(t, err)
	return b
}

// expected returns the fields a parser must extract, from NAME.expected.json
// and the vector's recorded rid.
func (v vector) expected(t testing.TB) *cms.Envelope {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", v.name+".expected.json"))
	require.NoError(t, err)
	var j struct {
		EncryptedKey string `json:"encrypted_key_hex"`
		IV           string `json:"iv_hex"`
		Ciphertext   string `json:"ciphertext_hex"`
	}
	require.NoError(t, json.Unmarshal(raw, &j))
	return &cms.Envelope{
		RecipientKeyID: unhex(t, v.rid),
		EncryptedKey:   unhex(t, j.EncryptedKey),
		IV:             unhex(t, j.IV),
		Ciphertext:     unhex(t, j.Ciphertext),
	}
}

// key returns the vector's private key.
func (v vector) key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", v.name+".key.pem"))
	require.NoError(t, err)
	k, err := parseRSAKey(b)
	require.NoError(t, err)
	return k
}

// plaintext returns the vector's expected plaintext.
func (v vector) plaintext(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", v.name+".plaintext.hex"))
	require.NoError(t, err)
	return unhex(t, strings.TrimSpace(string(b)))
}

// vectorByName returns the named vector.
func vectorByName(t testing.TB, name string) vector {
	t.Helper()
	for _, v := range vectors {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no vector %q", name)
	return vector{}
}

// parseRSAKey reads an RSA private key from PEM in PKCS#1 ("RSA PRIVATE
// KEY") or PKCS#8 ("PRIVATE KEY") form.
func parseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is %T, not RSA", k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// span is a half-open byte range [from, to) inside an envelope.
type span struct{ from, to int }

// fieldSpans locates the payload fields of env inside blob.
func fieldSpans(t testing.TB, blob []byte, env *cms.Envelope) (rid, key, iv, ct span) {
	t.Helper()
	find := func(what string, field []byte, after int) span {
		t.Helper()
		i := strings.Index(string(blob[after:]), string(field))
		require.GreaterOrEqual(t, i, 0, "%s not found in blob", what)
		return span{after + i, after + i + len(field)}
	}
	rid = find("rid", env.RecipientKeyID, 0)
	key = find("encrypted key", env.EncryptedKey, rid.to)
	iv = find("iv", env.IV, key.to)
	// The ciphertext may be chunked; its span runs from the first to the
	// last ciphertext byte, which is exact for a single chunk.
	first := find("ciphertext start", env.Ciphertext[:min(16, len(env.Ciphertext))], iv.to)
	last := find("ciphertext end", env.Ciphertext[max(0, len(env.Ciphertext)-16):], first.from)
	ct = span{first.from, last.to}
	return rid, key, iv, ct
}

// mask returns a copy of b with the given spans zeroed.
func mask(b []byte, spans ...span) []byte {
	out := append([]byte{}, b...)
	for _, s := range spans {
		clear(out[s.from:s.to])
	}
	return out
}
