package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// testChain is a root → intermediate → leaf chain generated for a test,
// shaped like the AWS one (P-384, ecdsa-with-SHA384) unless a test changes it.
type testChain struct {
	now       time.Time
	rootKey   *ecdsa.PrivateKey
	root      *x509.Certificate
	interKey  *ecdsa.PrivateKey
	inter     *x509.Certificate
	leafKey   *ecdsa.PrivateKey
	leaf      *x509.Certificate
	serialSeq int64
}

// chainOpts changes the generated chain.
type chainOpts struct {
	leafCurve elliptic.Curve          // default P-384
	leafPub   any                     // overrides the leaf's public key (leafKey is then unused)
	leafTmpl  func(*x509.Certificate) // edits the leaf template
	interTmpl func(*x509.Certificate) // edits the intermediate template
	rootTmpl  func(*x509.Certificate) // edits the root template
}

func newTestChain(t testing.TB, now time.Time, o chainOpts) *testChain {
	t.Helper()
	c := &testChain{now: now}
	c.rootKey = genKey(t, elliptic.P384())
	rootTmpl := c.caTemplate("test.nitro-enclaves", now.Add(-24*time.Hour), now.Add(24*time.Hour))
	if o.rootTmpl != nil {
		o.rootTmpl(rootTmpl)
	}
	c.root = c.issue(t, rootTmpl, rootTmpl, c.rootKey.Public(), c.rootKey)

	c.interKey = genKey(t, elliptic.P384())
	interTmpl := c.caTemplate("zonal.test.nitro-enclaves", now.Add(-2*time.Hour), now.Add(6*time.Hour))
	if o.interTmpl != nil {
		o.interTmpl(interTmpl)
	}
	c.inter = c.issue(t, interTmpl, c.root, c.interKey.Public(), c.rootKey)

	curve := o.leafCurve
	if curve == nil {
		curve = elliptic.P384()
	}
	c.leafKey = genKey(t, curve)
	leafTmpl := &x509.Certificate{
		SerialNumber:          c.serial(),
		Subject:               pkix.Name{CommonName: "i-0123456789abcdef0-enc0123456789abcdef.test.aws"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(3 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if o.leafTmpl != nil {
		o.leafTmpl(leafTmpl)
	}
	var leafPub any = c.leafKey.Public()
	if o.leafPub != nil {
		leafPub = o.leafPub
	}
	c.leaf = c.issue(t, leafTmpl, c.inter, leafPub, c.interKey)
	return c
}

func genKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	require.NoError(t, err)
	return k
}

func (c *testChain) serial() *big.Int {
	c.serialSeq++
	return big.NewInt(c.serialSeq)
}

func (c *testChain) caTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          c.serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
}

func (c *testChain) issue(t testing.TB, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// kv is one payload map entry; values are CBOR-marshalled, so a
// cbor.RawMessage is inserted verbatim.
type kv struct {
	key string
	val any
}

// fields returns the nine payload fields in AWS order.
func (c *testChain) fields() []kv {
	pcrs := map[uint64][]byte{}
	for i := range uint64(16) {
		v := make([]byte, 48)
		if i < 3 || i == 4 {
			v[0], v[47] = byte(i+1), 0xaa
		}
		pcrs[i] = v
	}
	return []kv{
		{"module_id", "i-0123456789abcdef0-enc0123456789abcdef"},
		{"digest", "SHA384"},
		{"timestamp", uint64(c.now.UnixMilli())},
		{"pcrs", pcrs},
		{"certificate", c.leaf.Raw},
		{"cabundle", [][]byte{c.root.Raw, c.inter.Raw}},
		{"public_key", cbor.RawMessage{0xf6}},
		{"user_data", []byte("user data")},
		{"nonce", []byte{1, 2, 3, 4}},
	}
}

// docOpts shapes the COSE_Sign1 envelope of a built document.
type docOpts struct {
	fields      []kv              // nil: c.fields()
	payload     []byte            // overrides fields
	protected   []byte            // bstr content; nil: a1 01 38 22
	unprotected cbor.RawMessage   // nil: a0
	signer      *ecdsa.PrivateKey // nil: the leaf key
	sigLen      int               // 0: 2 × the signer's field size
	tamperSig   bool
}

// cborMap encodes entries as a definite map in the given order, keeping
// duplicates.
func cborMap(t testing.TB, entries []kv) []byte {
	t.Helper()
	out := cborHead(5, uint64(len(entries)))
	for _, e := range entries {
		k, err := cbor.Marshal(e.key)
		require.NoError(t, err)
		v, err := cbor.Marshal(e.val)
		require.NoError(t, err)
		out = append(out, k...)
		out = append(out, v...)
	}
	return out
}

// cborHead encodes a CBOR head with major type mt and argument n.
func cborHead(mt byte, n uint64) []byte {
	switch {
	case n < 24:
		return []byte{mt<<5 | byte(n)}
	case n < 1<<8:
		return []byte{mt<<5 | 24, byte(n)}
	case n < 1<<16:
		return []byte{mt<<5 | 25, byte(n >> 8), byte(n)}
	default:
		return []byte{mt<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
}

func cborBytes(b []byte) []byte {
	return append(cborHead(2, uint64(len(b))), b...)
}

// build produces a COSE_Sign1 attestation document signed over
// Sig_structure with SHA-384, like the NSM.
func (c *testChain) build(t testing.TB, o docOpts) []byte {
	t.Helper()
	payload := o.payload
	if payload == nil {
		f := o.fields
		if f == nil {
			f = c.fields()
		}
		payload = cborMap(t, f)
	}
	protected := o.protected
	if protected == nil {
		protected = []byte{0xa1, 0x01, 0x38, 0x22}
	}
	unprotected := o.unprotected
	if unprotected == nil {
		unprotected = cbor.RawMessage{0xa0}
	}
	signer := o.signer
	if signer == nil {
		signer = c.leafKey
	}

	sigStructure, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	require.NoError(t, err)
	digest := sha512.Sum384(sigStructure)
	r, s, err := ecdsa.Sign(rand.Reader, signer, digest[:])
	require.NoError(t, err)
	size := (signer.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*size)
	r.FillBytes(sig[:size])
	s.FillBytes(sig[size:])
	if o.sigLen != 0 {
		sig = append(sig, make([]byte, max(0, o.sigLen-len(sig)))...)[:o.sigLen]
	}
	if o.tamperSig {
		sig[len(sig)-1] ^= 0x01
	}

	out := cborHead(4, 4)
	out = append(out, cborBytes(protected)...)
	out = append(out, unprotected...)
	out = append(out, cborBytes(payload)...)
	out = append(out, cborBytes(sig)...)
	return out
}

// withField returns the default fields with key set to val, or removed when
// val is the remove marker.
func withField(fields []kv, key string, val any) []kv {
	out := make([]kv, 0, len(fields))
	found := false
	for _, f := range fields {
		if f.key == key {
			found = true
			if val == remove {
				continue
			}
			f.val = val
		}
		out = append(out, f)
	}
	if !found && val != remove {
		out = append(out, kv{key, val})
	}
	return out
}

// removeMarker is the type of remove.
type removeMarker struct{}

// remove deletes a field in withField.
var remove = removeMarker{}
