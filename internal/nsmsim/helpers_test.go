//go:build !nosim

package nsmsim_test

import (
	"bytes"
	"crypto/x509"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nitrite"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// testImage stands in for an enclave binary.
var testImage = []byte("\x7fELF nitrosigner enclave test image v1")

// realDocPath is a real AWS document (see testdata/README.md).
const realDocPath = "testdata/att_blocky_2024-09-07.cbor"

// newSim starts a simulator for tests. Unless cfg says otherwise it uses
// testImage and a device path that does not exist.
func newSim(t *testing.T, cfg nsmsim.Config) *nsmsim.Simulator {
	t.Helper()
	if cfg.Image == nil && !cfg.Debug {
		cfg.Image = testImage
	}
	if cfg.DevicePath == "" {
		cfg.DevicePath = absentDevice(t)
	}
	s, err := nsmsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// absentDevice returns a path that does not exist.
func absentDevice(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "no-nsm")
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// verify runs nitrite.Verify with root as the only trust anchor.
func verify(t *testing.T, doc []byte, root *x509.Certificate, at time.Time) (*nitrite.Result, error) {
	t.Helper()
	var pool *x509.CertPool
	if root != nil {
		pool = x509.NewCertPool()
		pool.AddCert(root)
	}
	return nitrite.Verify(doc, nitrite.VerifyOptions{Roots: pool, CurrentTime: at})
}

// coseSign1 is the untagged COSE_Sign1 array.
type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

func decodeCOSE(t *testing.T, doc []byte) coseSign1 {
	t.Helper()
	var c coseSign1
	require.NoError(t, cbor.Unmarshal(doc, &c))
	return c
}

// entry is one key/value pair of a CBOR map, in encoded order.
type entry struct {
	key string
	val cbor.RawMessage
}

// orderedMap decodes a definite-length CBOR map with text keys, keeping the
// encoded order of its entries.
func orderedMap(t *testing.T, b []byte) []entry {
	t.Helper()
	require.NotEmpty(t, b)
	require.Equal(t, byte(5), b[0]>>5, "not a CBOR map")
	// The decoder only yields whole items, so skip the map head by hand
	// and then decode keys and values one at a time.
	n, head := mapHead(t, b)
	dec := cbor.NewDecoder(bytes.NewReader(b[head:]))
	out := make([]entry, 0, n)
	for range n {
		var e entry
		require.NoError(t, dec.Decode(&e.key))
		require.NoError(t, dec.Decode(&e.val))
		out = append(out, e)
	}
	require.Equal(t, len(b)-head, dec.NumBytesRead(), "trailing bytes after map")
	return out
}

// mapHead returns the entry count and head length of a definite map.
func mapHead(t *testing.T, b []byte) (n, head int) {
	t.Helper()
	switch info := b[0] & 0x1f; {
	case info < 24:
		return int(info), 1
	case info == 24:
		return int(b[1]), 2
	case info == 25:
		return int(b[1])<<8 | int(b[2]), 3
	default:
		t.Fatalf("unsupported map head %#x", b[0])
		return 0, 0
	}
}

func keys(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.key
	}
	return out
}

func field(t *testing.T, es []entry, key string) cbor.RawMessage {
	t.Helper()
	for _, e := range es {
		if e.key == key {
			return e.val
		}
	}
	t.Fatalf("no field %q", key)
	return nil
}
