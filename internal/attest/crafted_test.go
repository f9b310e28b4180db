package attest_test

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nitrite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/attest"
)

var craftedNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestCraftedControl(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	doc := c.build(t, docOpts{})

	_, err := nitrite.Verify(doc, nitrite.VerifyOptions{Roots: poolOf(c.root), CurrentTime: craftedNow})
	require.NoError(t, err, "nitrite accepts the crafted document")

	d, err := attest.Verify(doc, attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow})
	require.NoError(t, err)
	assert.Equal(t, "i-0123456789abcdef0-enc0123456789abcdef", d.ModuleID)
	assert.True(t, craftedNow.Equal(d.Timestamp))
	assert.Len(t, d.PCRs, 16)
	assert.False(t, d.Debug())
	assert.Nil(t, d.PublicKey)
	assert.Equal(t, []byte("user data"), d.UserData)
	assert.Equal(t, []byte{1, 2, 3, 4}, d.Nonce)
	assert.Equal(t, c.leaf.Raw, d.Certificate.Raw)
	require.Len(t, d.CABundle, 2)
	assert.Equal(t, c.root.Raw, d.CABundle[0].Raw)

	_, err = attest.Verify(doc, attest.Options{Now: craftedNow})
	require.ErrorIs(t, err, attest.ErrUntrusted, "default roots are AWS only")
	require.ErrorIs(t, err, attest.ErrUnknownRoot, "its root is not the AWS root")
}

// TestCraftedRootGap covers documents that nitrite accepts although their
// cabundle[0] is not the root the chain anchors on.
func TestCraftedRootGap(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	other, _ := selfSignedRoot(t, craftedNow)

	// A second certificate for the root's key and name: the intermediate
	// chains to it as well, but it is not byte-identical to the trusted root.
	twinTmpl := *c.root
	twinTmpl.SerialNumber = big.NewInt(999)
	twin := c.issue(t, &twinTmpl, &twinTmpl, c.rootKey.Public(), c.rootKey)

	tests := []struct {
		name     string
		cabundle [][]byte
		roots    []*x509.Certificate
	}{
		{"twin of the root", [][]byte{twin.Raw, c.inter.Raw}, []*x509.Certificate{c.root}},
		{"unrelated root", [][]byte{other.Raw, c.inter.Raw}, []*x509.Certificate{c.root}},
		{"root omitted", [][]byte{c.inter.Raw}, []*x509.Certificate{c.root}},
		{"cabundle[0] trusted but not the anchor", [][]byte{other.Raw, c.inter.Raw}, []*x509.Certificate{c.root, other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := c.build(t, docOpts{fields: withField(c.fields(), "cabundle", tt.cabundle)})
			_, err := nitrite.Verify(doc, nitrite.VerifyOptions{Roots: poolOf(tt.roots...), CurrentTime: craftedNow})
			require.NoError(t, err, "nitrite alone accepts this document")

			d, err := attest.Verify(doc, attest.Options{Roots: tt.roots, Now: craftedNow})
			require.ErrorIs(t, err, attest.ErrUntrusted)
			assert.Nil(t, d)
		})
	}
}

// TestCraftedLeafKey covers signing certificates that are not ECDSA P-384
// with ecdsa-with-SHA384, including the P-521 leaf that panics nitrite.
func TestCraftedLeafKey(t *testing.T) {
	p521 := newTestChain(t, craftedNow, chainOpts{leafCurve: elliptic.P521()})
	p256 := newTestChain(t, craftedNow, chainOpts{leafCurve: elliptic.P256()})
	sha256Leaf := newTestChain(t, craftedNow, chainOpts{leafTmpl: func(c *x509.Certificate) {
		c.SignatureAlgorithm = x509.ECDSAWithSHA256
	}})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaLeaf := newTestChain(t, craftedNow, chainOpts{leafPub: rsaKey.Public()})

	tests := []struct {
		name         string
		chain        *testChain
		opts         docOpts
		nitritePanic bool
	}{
		{"p-521 leaf, 96-byte signature", p521, docOpts{sigLen: 96}, true},
		{"p-521 leaf, 132-byte signature", p521, docOpts{}, true},
		{"p-256 leaf", p256, docOpts{sigLen: 96}, false},
		{"leaf signed with sha-256", sha256Leaf, docOpts{}, false},
		{"rsa leaf", rsaLeaf, docOpts{signer: rsaLeaf.interKey}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.chain
			doc := c.build(t, tt.opts)
			nopts := nitrite.VerifyOptions{Roots: poolOf(c.root), CurrentTime: craftedNow}
			if tt.nitritePanic {
				assert.Panics(t, func() { _, _ = nitrite.Verify(doc, nopts) }, "the document exercises nitrite's curve panic")
			}
			var d *attest.Document
			var err error
			require.NotPanics(t, func() {
				d, err = attest.Verify(doc, attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow})
			})
			require.ErrorIs(t, err, attest.ErrMalformed)
			assert.NotErrorIs(t, err, attest.ErrPanic, "caught by the pre-check, not by recover")
			assert.Nil(t, d)
		})
	}
}

func TestCraftedRoles(t *testing.T) {
	tests := []struct {
		name string
		o    chainOpts
	}{
		{"leaf is a ca", chainOpts{leafTmpl: func(c *x509.Certificate) { c.IsCA = true }}},
		{"leaf without digitalSignature", chainOpts{leafTmpl: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageContentCommitment }}},
		{"intermediate without keyCertSign", chainOpts{interTmpl: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }}},
		{"intermediate not a ca", chainOpts{interTmpl: func(c *x509.Certificate) { c.IsCA = false }}},
		{"root without keyCertSign", chainOpts{rootTmpl: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }}},
		{"leaf expired", chainOpts{leafTmpl: func(c *x509.Certificate) { c.NotAfter = craftedNow.Add(-time.Second) }}},
		{"leaf not yet valid", chainOpts{leafTmpl: func(c *x509.Certificate) { c.NotBefore = craftedNow.Add(time.Second) }}},
		{"intermediate expired", chainOpts{interTmpl: func(c *x509.Certificate) { c.NotAfter = craftedNow.Add(-time.Second) }}},
		{"root expired", chainOpts{rootTmpl: func(c *x509.Certificate) { c.NotAfter = craftedNow.Add(-time.Second) }}},
		{"path length exceeded", chainOpts{rootTmpl: func(c *x509.Certificate) { c.MaxPathLenZero = true }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestChain(t, craftedNow, tt.o)
			d, err := attest.Verify(c.build(t, docOpts{}), attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow})
			t.Log(err)
			require.ErrorIs(t, err, attest.ErrUntrusted)
			assert.Nil(t, d)
		})
	}
}

func TestCraftedSignature(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	roots := []*x509.Certificate{c.root}
	tests := []struct {
		name    string
		o       docOpts
		now     time.Time
		wantErr []error
	}{
		{"tampered", docOpts{tamperSig: true}, craftedNow, []error{attest.ErrBadSignature}},
		{"wrong key", docOpts{signer: c.interKey}, craftedNow, []error{attest.ErrBadSignature}},
		{"tampered and expired", docOpts{tamperSig: true}, craftedNow.Add(4 * time.Hour), []error{attest.ErrUntrusted, attest.ErrBadSignature}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := attest.Verify(c.build(t, tt.o), attest.Options{Roots: roots, Now: tt.now})
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			for _, want := range tt.wantErr {
				require.ErrorIs(t, err, want)
			}
			assert.Nil(t, d)
		})
	}
}

// TestCraftedMalformed covers structural rules of the envelope and payload.
func TestCraftedMalformed(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	f := c.fields()
	big1025 := bytes.Repeat([]byte{1}, 1025)
	raw := func(b ...byte) cbor.RawMessage { return cbor.RawMessage(b) }
	pcrs := func(n int, mutate func(map[uint64][]byte)) map[uint64][]byte {
		m := map[uint64][]byte{}
		for i := range uint64(n) {
			m[i] = bytes.Repeat([]byte{byte(i + 1)}, 48)
		}
		if mutate != nil {
			mutate(m)
		}
		return m
	}
	indefinite := func(entries []kv) []byte {
		m := cborMap(t, entries)
		return append(append([]byte{0xbf}, m[1:]...), 0xff)
	}
	// {0: pcr, 0 encoded non-minimally: pcr}
	dupPCRKey := append(append(append([]byte{0xa3, 0x00}, cborBytes(make([]byte, 48))...),
		append([]byte{0x18, 0x00}, cborBytes(make([]byte, 48))...)...),
		append([]byte{0x01}, cborBytes(make([]byte, 48))...)...)

	// The nine fields plus {1: 1}.
	intKey := append([]byte{0xaa}, append(cborMap(t, f)[1:], 0x01, 0x01)...)

	tests := []struct {
		name    string
		o       docOpts
		wantErr error // nil: must verify
	}{
		{"control", docOpts{}, nil},
		{"unknown field ignored", docOpts{fields: append(c.fields(), kv{"extra", 1})}, nil},
		{"nonce absent", docOpts{fields: withField(f, "nonce", remove)}, nil},
		{"nonce empty", docOpts{fields: withField(f, "nonce", []byte{})}, nil},
		{"aux fields at 1024 bytes", docOpts{fields: withField(withField(withField(f, "nonce", big1025[:1024]), "user_data", big1025[:1024]), "public_key", big1025[:1024])}, nil},
		{"fields in another order", docOpts{fields: append(append([]kv{}, f[5:]...), f[:5]...)}, nil},

		{"protected alg as text", docOpts{protected: []byte{0xa1, 0x01, 0x65, 'E', 'S', '3', '8', '4'}}, attest.ErrMalformed},
		{"protected es256", docOpts{protected: []byte{0xa1, 0x01, 0x26}}, attest.ErrMalformed},
		{"protected extra header", docOpts{protected: []byte{0xa2, 0x01, 0x38, 0x22, 0x04, 0x41, 0x01}}, attest.ErrMalformed},
		{"protected empty", docOpts{protected: []byte{}}, attest.ErrMalformed},
		{"unprotected kid", docOpts{unprotected: raw(0xa1, 0x04, 0x41, 0x01)}, attest.ErrMalformed},
		{"unprotected null", docOpts{unprotected: raw(0xf6)}, attest.ErrMalformed},
		{"signature 64 bytes", docOpts{sigLen: 64}, attest.ErrMalformed},
		{"signature 97 bytes", docOpts{sigLen: 97}, attest.ErrMalformed},
		{"payload empty", docOpts{payload: []byte{}}, attest.ErrMalformed},
		{"payload array", docOpts{payload: []byte{0x80}}, attest.ErrMalformed},
		{"payload trailing byte", docOpts{payload: append(cborMap(t, f), 0x00)}, attest.ErrMalformed},
		{"payload over 16 KiB", docOpts{fields: append(c.fields(), kv{"padding", make([]byte, 17000)})}, attest.ErrMalformed},
		{"payload indefinite map", docOpts{payload: indefinite(f)}, attest.ErrMalformed},
		{"duplicate nonce", docOpts{fields: append(c.fields(), kv{"nonce", []byte{9}})}, attest.ErrMalformed},
		{"case variant beside key", docOpts{fields: append(c.fields(), kv{"Nonce", []byte{9}})}, attest.ErrMalformed},
		{"case variant alone", docOpts{fields: append(withField(f, "nonce", remove), kv{"NONCE", []byte{9}})}, attest.ErrMalformed},
		{"integer key", docOpts{payload: intKey}, attest.ErrMalformed},

		{"module_id missing", docOpts{fields: withField(f, "module_id", remove)}, attest.ErrMalformed},
		{"module_id empty", docOpts{fields: withField(f, "module_id", "")}, attest.ErrMalformed},
		{"module_id bytes", docOpts{fields: withField(f, "module_id", []byte("i-0"))}, attest.ErrMalformed},
		{"module_id invalid utf-8", docOpts{fields: withField(f, "module_id", raw(0x62, 0xff, 0xfe))}, attest.ErrMalformed},
		{"module_id null", docOpts{fields: withField(f, "module_id", nil)}, attest.ErrMalformed},
		{"digest missing", docOpts{fields: withField(f, "digest", remove)}, attest.ErrMalformed},
		{"digest sha256", docOpts{fields: withField(f, "digest", "SHA256")}, attest.ErrMalformed},
		{"digest lowercase", docOpts{fields: withField(f, "digest", "sha384")}, attest.ErrMalformed},
		{"timestamp missing", docOpts{fields: withField(f, "timestamp", remove)}, attest.ErrMalformed},
		{"timestamp zero", docOpts{fields: withField(f, "timestamp", 0)}, attest.ErrMalformed},
		{"timestamp negative", docOpts{fields: withField(f, "timestamp", -1)}, attest.ErrMalformed},
		{"timestamp float", docOpts{fields: withField(f, "timestamp", float64(craftedNow.UnixMilli()))}, attest.ErrMalformed},
		{"timestamp text", docOpts{fields: withField(f, "timestamp", "1725719859545")}, attest.ErrMalformed},
		{"timestamp max uint64", docOpts{fields: withField(f, "timestamp", uint64(math.MaxUint64))}, attest.ErrMalformed},
		{"timestamp tagged", docOpts{fields: withField(f, "timestamp", cbor.Tag{Number: 1, Content: craftedNow.Unix()})}, attest.ErrMalformed},
		{"pcrs missing", docOpts{fields: withField(f, "pcrs", remove)}, attest.ErrMalformed},
		{"pcrs empty", docOpts{fields: withField(f, "pcrs", map[uint64][]byte{})}, attest.ErrMalformed},
		{"pcrs array", docOpts{fields: withField(f, "pcrs", [][]byte{make([]byte, 48)})}, attest.ErrMalformed},
		{"pcrs 33 entries", docOpts{fields: withField(f, "pcrs", pcrs(33, nil))}, attest.ErrMalformed},
		{"pcr index 32", docOpts{fields: withField(f, "pcrs", pcrs(3, func(m map[uint64][]byte) { m[32] = make([]byte, 48) }))}, attest.ErrMalformed},
		{"pcr negative index", docOpts{fields: withField(f, "pcrs", map[int64][]byte{0: make([]byte, 48), 1: make([]byte, 48), 2: make([]byte, 48), -1: make([]byte, 48)})}, attest.ErrMalformed},
		{"pcr 47 bytes", docOpts{fields: withField(f, "pcrs", pcrs(3, func(m map[uint64][]byte) { m[1] = m[1][:47] }))}, attest.ErrMalformed},
		{"pcr text", docOpts{fields: withField(f, "pcrs", map[uint64]any{0: "x", 1: make([]byte, 48), 2: make([]byte, 48)})}, attest.ErrMalformed},
		{"pcr0 missing", docOpts{fields: withField(f, "pcrs", pcrs(3, func(m map[uint64][]byte) { delete(m, 0) }))}, attest.ErrMalformed},
		{"pcr2 missing", docOpts{fields: withField(f, "pcrs", pcrs(2, nil))}, attest.ErrMalformed},
		{"pcr key duplicated non-minimally", docOpts{fields: withField(f, "pcrs", raw(dupPCRKey...))}, attest.ErrMalformed},
		{"certificate missing", docOpts{fields: withField(f, "certificate", remove)}, attest.ErrMalformed},
		{"certificate null", docOpts{fields: withField(f, "certificate", nil)}, attest.ErrMalformed},
		{"certificate empty", docOpts{fields: withField(f, "certificate", []byte{})}, attest.ErrMalformed},
		{"certificate garbage", docOpts{fields: withField(f, "certificate", []byte("garbage"))}, attest.ErrMalformed},
		{"certificate 1025 bytes", docOpts{fields: withField(f, "certificate", big1025)}, attest.ErrMalformed},
		{"certificate trailing byte", docOpts{fields: withField(f, "certificate", append(bytes.Clone(c.leaf.Raw), 0))}, attest.ErrMalformed},
		{"cabundle missing", docOpts{fields: withField(f, "cabundle", remove)}, attest.ErrMalformed},
		{"cabundle empty", docOpts{fields: withField(f, "cabundle", [][]byte{})}, attest.ErrMalformed},
		{"cabundle bytes", docOpts{fields: withField(f, "cabundle", c.root.Raw)}, attest.ErrMalformed},
		{"cabundle empty entry", docOpts{fields: withField(f, "cabundle", [][]byte{c.root.Raw, {}})}, attest.ErrMalformed},
		{"cabundle garbage entry", docOpts{fields: withField(f, "cabundle", [][]byte{c.root.Raw, []byte("garbage"), c.inter.Raw})}, attest.ErrMalformed},
		{"cabundle 17 entries", docOpts{fields: withField(f, "cabundle", slicesRepeat(c.inter.Raw, 17))}, attest.ErrMalformed},
		{"public_key 1025 bytes", docOpts{fields: withField(f, "public_key", big1025)}, attest.ErrMalformed},
		{"user_data 1025 bytes", docOpts{fields: withField(f, "user_data", big1025)}, attest.ErrMalformed},
		{"nonce 1025 bytes", docOpts{fields: withField(f, "nonce", big1025)}, attest.ErrMalformed},
		{"nonce text", docOpts{fields: withField(f, "nonce", "abc")}, attest.ErrMalformed},
		{"nonce integer", docOpts{fields: withField(f, "nonce", 7)}, attest.ErrMalformed},
		{"nonce undefined", docOpts{fields: withField(f, "nonce", raw(0xf7))}, attest.ErrMalformed},
		{"nonce tagged", docOpts{fields: withField(f, "nonce", cbor.Tag{Number: 24, Content: []byte{1}})}, attest.ErrMalformed},
		{"user_data indefinite bytes", docOpts{fields: withField(f, "user_data", raw(0x5f, 0x41, 0x01, 0xff))}, attest.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := c.build(t, tt.o)
			var d *attest.Document
			var err error
			require.NotPanics(t, func() {
				d, err = attest.Verify(doc, attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow})
			})
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.NotNil(t, d)
				return
			}
			t.Log(err)
			require.ErrorIs(t, err, tt.wantErr)
			assert.NotErrorIs(t, err, attest.ErrPanic)
			assert.Nil(t, d)
		})
	}
}

func slicesRepeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestCraftedOptionalFields checks absent, null and empty optional fields.
func TestCraftedOptionalFields(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	f := c.fields()
	opts := attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow}

	d, err := attest.Verify(c.build(t, docOpts{fields: withField(withField(f, "nonce", remove), "user_data", nil)}), opts)
	require.NoError(t, err)
	assert.Nil(t, d.Nonce)
	assert.Nil(t, d.UserData)

	d, err = attest.Verify(c.build(t, docOpts{fields: withField(f, "nonce", []byte{})}), opts)
	require.NoError(t, err)
	assert.NotNil(t, d.Nonce)
	assert.Empty(t, d.Nonce)

	// An empty expected nonce matches only a present empty nonce.
	opts.Nonce = []byte{}
	_, err = attest.Verify(c.build(t, docOpts{fields: withField(f, "nonce", []byte{})}), opts)
	require.NoError(t, err)
	_, err = attest.Verify(c.build(t, docOpts{fields: withField(f, "nonce", remove)}), opts)
	require.ErrorIs(t, err, attest.ErrNonceMismatch)
	_, err = attest.Verify(c.build(t, docOpts{fields: withField(f, "nonce", nil)}), opts)
	require.ErrorIs(t, err, attest.ErrNonceMismatch)
}

// TestVerifyRecoversPanic replaces nitrite to reach the paths the
// pre-checks otherwise make unreachable. It must not run in parallel.
func TestVerifyRecoversPanic(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	doc := c.build(t, docOpts{})
	opts := attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow}
	good, err := nitrite.Verify(doc, nitrite.VerifyOptions{Roots: poolOf(c.root), CurrentTime: craftedNow})
	require.NoError(t, err)

	other := *good
	otherDoc := *good.Document
	otherDoc.Nonce = []byte{9, 9}
	other.Document = &otherDoc
	unsigned := *good
	unsigned.SignatureOK = false

	tests := []struct {
		name    string
		stub    func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error)
		wantErr []error
	}{
		{"panic", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { panic("boom") }, []error{attest.ErrMalformed, attest.ErrPanic}},
		{"nil result", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return nil, nil }, []error{attest.ErrBadSignature}},
		{"signature not ok without error", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return &unsigned, nil }, []error{attest.ErrBadSignature}},
		{"result with error", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return good, nitrite.ErrBadSignature }, []error{attest.ErrBadSignature}},
		{"structural error", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return nil, nitrite.ErrBadPCRValue }, []error{attest.ErrMalformed}},
		{"unknown error with bad signature", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return &unsigned, assert.AnError }, []error{attest.ErrUntrusted, attest.ErrBadSignature}},
		{"different decoding", func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error) { return &other, nil }, []error{attest.ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore := attest.SetNitriteVerify(tt.stub)
			defer restore()
			var d *attest.Document
			var err error
			require.NotPanics(t, func() { d, err = attest.Verify(doc, opts) })
			for _, want := range tt.wantErr {
				require.ErrorIs(t, err, want)
			}
			assert.Nil(t, d)
		})
	}

	d, err := attest.Verify(doc, opts)
	require.NoError(t, err, "nitrite restored")
	assert.NotNil(t, d)
}

// The cabundle must be the ordered chain root → … → the leaf's issuer, with
// nothing else in it. nitrite builds paths from an unordered pool, so it
// accepts every variation below; Verify does not.
func TestCraftedCABundleOrder(t *testing.T) {
	c := newTestChain(t, craftedNow, chainOpts{})
	// A second intermediate below the first, and a leaf below it.
	i2Key := genKey(t, elliptic.P384())
	i2 := c.issue(t, c.caTemplate("i2.test.nitro-enclaves", craftedNow.Add(-time.Hour), craftedNow.Add(time.Hour)), c.inter, i2Key.Public(), c.interKey)
	leafKey := genKey(t, elliptic.P384())
	leafTmpl := *c.leaf
	leafTmpl.SerialNumber = c.serial()
	leaf := c.issue(t, &leafTmpl, i2, leafKey.Public(), i2Key)
	// A CA from an unrelated root, and an expired CA under the real root.
	other := newTestChain(t, craftedNow, chainOpts{})
	expired := c.issue(t, c.caTemplate("old.test.nitro-enclaves", craftedNow.Add(-48*time.Hour), craftedNow.Add(-24*time.Hour)), c.root, genKey(t, elliptic.P384()).Public(), c.rootKey)

	build := func(bundle ...*x509.Certificate) []byte {
		raw := make([][]byte, len(bundle))
		for i, b := range bundle {
			raw[i] = b.Raw
		}
		f := withField(c.fields(), "certificate", leaf.Raw)
		return c.build(t, docOpts{fields: withField(f, "cabundle", raw), signer: leafKey})
	}
	opts := attest.Options{Roots: []*x509.Certificate{c.root}, Now: craftedNow}
	_, err := attest.Verify(build(c.root, c.inter, i2), opts)
	require.NoError(t, err, "the ordered chain")

	tests := []struct {
		name   string
		bundle []*x509.Certificate
	}{
		{"intermediates swapped", []*x509.Certificate{c.root, i2, c.inter}},
		{"unrelated ca appended", []*x509.Certificate{c.root, c.inter, i2, other.inter}},
		{"unrelated ca inserted", []*x509.Certificate{c.root, other.inter, c.inter, i2}},
		{"expired ca inserted", []*x509.Certificate{c.root, expired, c.inter, i2}},
		{"intermediate repeated", []*x509.Certificate{c.root, c.inter, c.inter, i2}},
		{"root repeated", []*x509.Certificate{c.root, c.root, c.inter, i2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := build(tt.bundle...)
			_, err := nitrite.Verify(doc, nitrite.VerifyOptions{Roots: poolOf(c.root), CurrentTime: craftedNow})
			require.NoError(t, err, "nitrite alone accepts it")
			d, err := attest.Verify(doc, opts)
			t.Log(err)
			require.ErrorIs(t, err, attest.ErrUntrusted)
			assert.Nil(t, d)
		})
	}
}
