package cms_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// node is an element of a hand-built BER tree. It is written independently
// of the package's encoder so the tests can build both valid and broken
// envelopes.
type node struct {
	tag   byte
	indef bool   // indefinite length (00 00 terminated)
	hdr   []byte // when set, replaces the tag and length octets verbatim
	val   []byte // contents of a primitive element
	kids  []*node
}

func (n *node) encode() []byte {
	body := append([]byte{}, n.val...)
	for _, k := range n.kids {
		body = append(body, k.encode()...)
	}
	switch {
	case n.hdr != nil:
		return append(append([]byte{}, n.hdr...), body...)
	case n.indef:
		return append(append([]byte{n.tag, 0x80}, body...), 0, 0)
	}
	out := []byte{n.tag}
	switch l := len(body); {
	case l < 0x80:
		out = append(out, byte(l))
	case l < 0x100:
		out = append(out, 0x81, byte(l))
	default:
		out = append(out, 0x82, byte(l>>8), byte(l))
	}
	return append(out, body...)
}

// walk calls f on n and every descendant.
func (n *node) walk(f func(*node)) {
	f(n)
	for _, k := range n.kids {
		k.walk(f)
	}
}

func prim(tag byte, val []byte) *node    { return &node{tag: tag, val: val} }
func cons(tag byte, kids ...*node) *node { return &node{tag: tag, kids: kids} }
func indef(tag byte, kids ...*node) *node {
	return &node{tag: tag, indef: true, kids: kids}
}

var (
	oidEnvelopedData = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	oidSignedData    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	oidData          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	oidRSAEncryption = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	oidRSAESOAEP     = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07}
	oidMGF1          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08}
	oidPSpecified    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09}
	oidSHA1          = []byte{0x2b, 0x0e, 0x03, 0x02, 0x1a}
	oidSHA256        = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	oidAES128CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02}
	oidAES256CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}
)

// kmsTree builds env in KMS's layout (constructed content as one chunk, or
// primitive) and returns the root with its named elements for editing.
func kmsTree(env *cms.Envelope, constructed bool) (*node, map[string]*node) {
	at := map[string]*node{}
	name := func(s string, n *node) *node { at[s] = n; return n }
	sha256Alg := func(prefix string) *node {
		return name(prefix+"Alg", cons(0x30, name(prefix+"OID", prim(0x06, oidSHA256)), name(prefix+"Null", prim(0x05, nil))))
	}
	var content *node
	if constructed {
		content = indef(0xa0, name("chunk", prim(0x04, env.Ciphertext)))
	} else {
		content = prim(0x80, env.Ciphertext)
	}
	keyAlg := name("keyAlg", cons(0x30,
		name("oaepOID", prim(0x06, oidRSAESOAEP)),
		name("oaepParams", cons(0x30,
			name("hashFunc", cons(0xa0, sha256Alg("hash"))),
			name("maskGenFunc", cons(0xa1,
				name("mgfAlg", cons(0x30, name("mgfOID", prim(0x06, oidMGF1)), sha256Alg("mgfHash")))))))))
	ktri := name("ktri", cons(0x30,
		name("ktriVersion", prim(0x02, []byte{2})),
		name("rid", prim(0x80, env.RecipientKeyID)),
		keyAlg,
		name("encryptedKey", prim(0x04, env.EncryptedKey))))
	eci := name("eci", indef(0x30,
		name("dataOID", prim(0x06, oidData)),
		name("contentAlg", cons(0x30, name("aesOID", prim(0x06, oidAES256CBC)), name("iv", prim(0x04, env.IV)))),
		name("content", content)))
	envelopedData := name("envelopedData", indef(0x30,
		name("version", prim(0x02, []byte{2})),
		name("recipientInfos", cons(0x31, ktri)),
		eci))
	root := name("contentInfo", indef(0x30,
		name("contentType", prim(0x06, oidEnvelopedData)),
		name("explicit", indef(0xa0, envelopedData))))
	return root, at
}

func TestTreeReproducesVectors(t *testing.T) {
	for _, v := range vectors {
		root, _ := kmsTree(v.expected(t), v.constructed)
		assert.Equal(t, v.blob(t), root.encode(), v.name)
	}
}

// TestParseAcceptsBER shows that BER variants KMS does not emit but the
// standard allows still parse to the same fields.
func TestParseAcceptsBER(t *testing.T) {
	v := vectorByName(t, "edgebit_cfr")
	want := v.expected(t)
	tests := []struct {
		name        string
		constructed bool
		edit        func(root *node, at map[string]*node)
	}{
		{"all definite, constructed content", true, func(root *node, _ map[string]*node) {
			root.walk(func(n *node) { n.indef = false })
		}},
		{"all definite, primitive content", false, func(root *node, _ map[string]*node) {
			root.walk(func(n *node) { n.indef = false })
		}},
		{"all constructed indefinite", true, func(root *node, _ map[string]*node) {
			root.walk(func(n *node) { n.indef = n.tag&0x20 != 0 })
		}},
		{"non-minimal lengths", true, func(_ *node, at map[string]*node) {
			at["iv"].hdr = []byte{0x04, 0x82, 0x00, 0x10}
			at["rid"].hdr = []byte{0x80, 0x84, 0, 0, 0, 0x20}
		}},
		{"sha256 parameters absent", true, func(_ *node, at map[string]*node) {
			at["hashAlg"].kids = at["hashAlg"].kids[:1]
			at["mgfHashAlg"].kids = at["mgfHashAlg"].kids[:1]
		}},
		{"several chunks, one empty", true, func(_ *node, at map[string]*node) {
			ct := want.Ciphertext
			at["content"].kids = []*node{prim(0x04, ct[:5]), prim(0x04, nil), prim(0x04, ct[5:17]), prim(0x04, ct[17:])}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, at := kmsTree(want, tt.constructed)
			tt.edit(root, at)
			blob := root.encode()
			env, err := cms.Parse(blob)
			require.NoError(t, err)
			assert.Equal(t, want, env)
			pt, err := cms.Decrypt(v.key(t), blob)
			require.NoError(t, err)
			assert.Equal(t, v.plaintext(t), pt)
		})
	}
}

func TestParseMalformed(t *testing.T) {
	want := vectorByName(t, "edgebit_cfr").expected(t)
	tests := []struct {
		name    string
		edit    func(root *node, at map[string]*node)
		errText string // part of the error message
	}{
		{"contentType signedData", func(_ *node, at map[string]*node) { at["contentType"].val = oidSignedData }, "1.2.840.113549.1.7.2"},
		{"content [1]", func(_ *node, at map[string]*node) { at["explicit"].tag = 0xa1 }, "ContentInfo.content"},
		{"extra element in ContentInfo", func(root *node, _ map[string]*node) {
			root.kids = append(root.kids, prim(0x05, nil))
		}, "trailing"},
		{"EnvelopedData version 0", func(_ *node, at map[string]*node) { at["version"].val = []byte{0} }, "EnvelopedData.version"},
		{"EnvelopedData version 3", func(_ *node, at map[string]*node) { at["version"].val = []byte{3} }, "EnvelopedData.version"},
		{"EnvelopedData version padded", func(_ *node, at map[string]*node) { at["version"].val = []byte{0, 2} }, "EnvelopedData.version"},
		{"originatorInfo present", func(_ *node, at map[string]*node) {
			ed := at["envelopedData"]
			ed.kids = append([]*node{ed.kids[0], cons(0xa0)}, ed.kids[1:]...)
		}, "recipientInfos"},
		{"unprotectedAttrs present", func(_ *node, at map[string]*node) {
			at["envelopedData"].kids = append(at["envelopedData"].kids, cons(0xa1))
		}, "EnvelopedData: 2 unexpected trailing"},
		{"no recipient", func(_ *node, at map[string]*node) { at["recipientInfos"].kids = nil }, "missing"},
		{"two recipients", func(_ *node, at map[string]*node) {
			at["recipientInfos"].kids = append(at["recipientInfos"].kids, at["ktri"])
		}, "only one recipient"},
		{"recipientInfos as SEQUENCE", func(_ *node, at map[string]*node) { at["recipientInfos"].tag = 0x30 }, "recipientInfos"},
		{"KTRI version 0", func(_ *node, at map[string]*node) { at["ktriVersion"].val = []byte{0} }, "KeyTransRecipientInfo.version"},
		{"rid issuerAndSerialNumber", func(_ *node, at map[string]*node) {
			*at["rid"] = *cons(0x30, cons(0x30), prim(0x02, []byte{1}))
		}, "rid"},
		{"rid 20 bytes", func(_ *node, at map[string]*node) { at["rid"].val = at["rid"].val[:20] }, "20 octets"},
		{"rid constructed", func(_ *node, at map[string]*node) {
			*at["rid"] = *cons(0xa0, prim(0x04, want.RecipientKeyID))
		}, "rid"},
		{"PKCS#1 v1.5 key transport", func(_ *node, at map[string]*node) { at["oaepOID"].val = oidRSAEncryption }, "1.2.840.113549.1.1.1"},
		{"OAEP params absent", func(_ *node, at map[string]*node) { at["keyAlg"].kids = at["keyAlg"].kids[:1] }, "RSAES-OAEP-params"},
		{"OAEP params NULL", func(_ *node, at map[string]*node) { at["oaepParams"] = nil; at["keyAlg"].kids[1] = prim(0x05, nil) }, "RSAES-OAEP-params"},
		{"hashFunc absent (SHA-1)", func(_ *node, at map[string]*node) {
			at["oaepParams"].kids = at["oaepParams"].kids[1:]
		}, "hashFunc"},
		{"maskGenFunc absent", func(_ *node, at map[string]*node) {
			at["oaepParams"].kids = at["oaepParams"].kids[:1]
		}, "maskGenFunc"},
		{"hash SHA-1", func(_ *node, at map[string]*node) { at["hashOID"].val = oidSHA1 }, "1.3.14.3.2.26"},
		{"MGF1 hash SHA-1", func(_ *node, at map[string]*node) { at["mgfHashOID"].val = oidSHA1 }, "1.3.14.3.2.26"},
		{"mask generation not MGF1", func(_ *node, at map[string]*node) { at["mgfOID"].val = oidSHA256 }, "id-mgf1"},
		{"pSourceFunc label", func(_ *node, at map[string]*node) {
			at["oaepParams"].kids = append(at["oaepParams"].kids,
				cons(0xa2, cons(0x30, prim(0x06, oidPSpecified), prim(0x04, []byte("label")))))
		}, "pSourceFunc"},
		{"hash NULL with contents", func(_ *node, at map[string]*node) { at["hashNull"].val = []byte{0} }, "NULL"},
		{"hash parameters not NULL", func(_ *node, at map[string]*node) { at["hashNull"].tag = 0x04 }, "parameters"},
		{"hash AlgorithmIdentifier trailing", func(_ *node, at map[string]*node) {
			at["hashAlg"].kids = append(at["hashAlg"].kids, prim(0x05, nil))
		}, "trailing"},
		{"hashFunc holds two algorithms", func(_ *node, at map[string]*node) {
			at["hashFunc"].kids = append(at["hashFunc"].kids, at["hashAlg"])
		}, "trailing"},
		{"encryptedKey empty", func(_ *node, at map[string]*node) { at["encryptedKey"].val = nil }, "empty"},
		{"encryptedKey constructed", func(_ *node, at map[string]*node) {
			*at["encryptedKey"] = *cons(0x24, prim(0x04, want.EncryptedKey))
		}, "encryptedKey"},
		{"encryptedKey missing", func(_ *node, at map[string]*node) {
			at["ktri"].kids = at["ktri"].kids[:3]
		}, "encryptedKey: missing"},
		{"KTRI trailing field", func(_ *node, at map[string]*node) {
			at["ktri"].kids = append(at["ktri"].kids, prim(0x04, nil))
		}, "KeyTransRecipientInfo: 2 unexpected trailing"},
		{"content type signedData", func(_ *node, at map[string]*node) { at["dataOID"].val = oidSignedData }, "EncryptedContentInfo.contentType"},
		{"AES-128-CBC", func(_ *node, at map[string]*node) { at["aesOID"].val = oidAES128CBC }, "2.16.840.1.101.3.4.1.2"},
		{"IV 8 bytes", func(_ *node, at map[string]*node) { at["iv"].val = at["iv"].val[:8] }, "8 octets"},
		{"IV missing", func(_ *node, at map[string]*node) { at["contentAlg"].kids = at["contentAlg"].kids[:1] }, "IV: missing"},
		{"IV constructed", func(_ *node, at map[string]*node) { *at["iv"] = *cons(0x24, prim(0x04, want.IV)) }, "IV"},
		{"encryptedContent missing", func(_ *node, at map[string]*node) { at["eci"].kids = at["eci"].kids[:2] }, "encryptedContent: missing"},
		{"encryptedContent as OCTET STRING", func(_ *node, at map[string]*node) { *at["content"] = *prim(0x04, want.Ciphertext) }, "encryptedContent"},
		{"chunk with context tag", func(_ *node, at map[string]*node) { at["chunk"].tag = 0x80 }, "chunk 0"},
		{"nested constructed chunk", func(_ *node, at map[string]*node) {
			at["content"].kids = []*node{cons(0x24, prim(0x04, want.Ciphertext))}
		}, "chunk 0"},
		{"EncryptedContentInfo trailing", func(_ *node, at map[string]*node) {
			at["eci"].kids = append(at["eci"].kids, cons(0xa1))
		}, "EncryptedContentInfo: 2 unexpected trailing"},
		{"indefinite primitive", func(_ *node, at map[string]*node) { at["iv"].indef = true }, "indefinite length on primitive"},
		{"length field of 5 octets", func(_ *node, at map[string]*node) { at["iv"].hdr = []byte{0x04, 0x85, 0, 0, 0, 0, 0x10} }, "5 octets"},
		{"reserved length 0xff", func(_ *node, at map[string]*node) { at["iv"].hdr = []byte{0x04, 0xff} }, "reserved"},
		{"length beyond input", func(_ *node, at map[string]*node) { at["iv"].hdr = []byte{0x04, 0x84, 0xff, 0xff, 0xff, 0xff} }, "exceeds"},
		{"multi-byte tag", func(_ *node, at map[string]*node) { at["contentType"].tag = 0x1f }, "multi-byte tag"},
		{"multi-byte context tag", func(_ *node, at map[string]*node) { at["explicit"].tag = 0xbf }, "multi-byte tag"},
		{"end-of-contents with a length", func(_ *node, at map[string]*node) {
			at["eci"].kids = append(at["eci"].kids, prim(0x00, []byte{0}))
		}, "end-of-contents"},
		{"end-of-contents in definite content", func(_ *node, at map[string]*node) {
			at["ktri"].kids = append(at["ktri"].kids, prim(0x00, nil))
		}, "KeyTransRecipientInfo: 2 unexpected trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, at := kmsTree(want, true)
			tt.edit(root, at)
			env, err := cms.Parse(root.encode())
			require.ErrorIs(t, err, cms.ErrMalformed)
			assert.Contains(t, err.Error(), tt.errText)
			assert.Nil(t, env)
		})
	}
}

func TestParseRejectsRawInput(t *testing.T) {
	blob := vectorByName(t, "edgebit_cfr").blob(t)
	tests := []struct {
		name    string
		in      []byte
		errText string
	}{
		{"nil", nil, "missing"},
		{"empty", []byte{}, "missing"},
		{"one byte", []byte{0x30}, "truncated"},
		{"garbage", []byte("not a cms envelope"), "ContentInfo"},
		{"zeros", make([]byte, 64), "end-of-contents"},
		{"trailing byte", append(append([]byte{}, blob...), 0x00), "after ContentInfo"},
		{"trailing end-of-contents", append(append([]byte{}, blob...), 0x00, 0x00), "after ContentInfo"},
		{"trailing copy", append(append([]byte{}, blob...), blob...), "after ContentInfo"},
		{"missing final end-of-contents", blob[:len(blob)-2], "end-of-contents"},
		{"oversize", make([]byte, cms.MaxEnvelopeSize+1), "limit"},
		{"depth bomb", bytes.Repeat([]byte{0x30, 0x80}, cms.MaxEnvelopeSize/2), "nested deeper"},
		{"depth bomb within limit size, closed", append(bytes.Repeat([]byte{0x30, 0x80}, 100), make([]byte, 200)...), "nested deeper"},
		{"definite length bomb", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x06, 0x00}, "exceeds"},
		{"wide indefinite", append(append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x05, 0x00}, 400000)...), 0, 0), "ContentInfo.contentType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := cms.Parse(tt.in)
			require.ErrorIs(t, err, cms.ErrMalformed)
			assert.Contains(t, err.Error(), tt.errText)
			assert.Nil(t, env)
		})
	}
}

// TestDepthLimit shows the limit sits above what KMS needs and applies to
// indefinite nesting inside otherwise valid structure.
func TestDepthLimit(t *testing.T) {
	nested := func(depth int) []byte {
		return append(bytes.Repeat([]byte{0x30, 0x80}, depth), bytes.Repeat([]byte{0, 0}, depth)...)
	}
	want := vectorByName(t, "edgebit_cfr").expected(t)
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{cms.MaxDepth - 3, true}, {cms.MaxDepth - 2, false}} {
		// Appended inside EncryptedContentInfo (depth 3), the innermost
		// nested SEQUENCE sits at depth 3 + depth.
		root, at := kmsTree(want, true)
		at["eci"].kids = append(at["eci"].kids, &node{hdr: nested(tc.depth)})
		_, err := cms.Parse(root.encode())
		require.ErrorIs(t, err, cms.ErrMalformed)
		if tc.ok {
			assert.Contains(t, err.Error(), "EncryptedContentInfo: ") // walked, then refused as trailing
			assert.NotContains(t, err.Error(), "nested deeper")
		} else {
			assert.Contains(t, err.Error(), "nested deeper")
		}
	}
}

func TestTruncationsFail(t *testing.T) {
	for _, v := range vectors {
		blob := v.blob(t)
		for n := range len(blob) {
			env, err := cms.Parse(blob[:n])
			require.ErrorIs(t, err, cms.ErrMalformed, "%s truncated to %d", v.name, n)
			require.Nil(t, env)
		}
		if v.keyed {
			key := v.key(t)
			for n := range len(blob) {
				_, err := cms.Decrypt(key, blob[:n])
				require.ErrorIs(t, err, cms.ErrMalformed, "%s truncated to %d", v.name, n)
			}
		}
	}
}

// TestFlippedBytes flips bytes of the keyed vectors. Structure bytes fail
// as malformed, rid bytes as another recipient, encrypted-key bytes as a
// decryption failure. IV and ciphertext bytes either fail or change the
// plaintext: CMS EnvelopedData carries no MAC. Every structure byte is
// flipped three ways; payload bytes, which need an RSA decryption each, one
// way (every 16th byte of the encrypted key, all IV and ciphertext bytes).
func TestFlippedBytes(t *testing.T) {
	for _, v := range vectors {
		if !v.keyed {
			continue
		}
		blob, exp, key, want := v.blob(t), v.expected(t), v.key(t), v.plaintext(t)
		rid, ek, iv, ct := fieldSpans(t, blob, exp)
		in := func(i int, s span) bool { return i >= s.from && i < s.to }
		for i := range blob {
			flips := []byte{0xff, 0x01, 0x80}
			switch {
			case in(i, ek) && (i-ek.from)%16 != 0 && i != ek.to-1:
				continue
			case in(i, ek), in(i, iv), in(i, ct):
				flips = flips[:1]
			}
			for _, flip := range flips {
				mut := append([]byte{}, blob...)
				mut[i] ^= flip
				pt, err := cms.Decrypt(key, mut)
				msg := []any{"%s: byte %d ^ %02x", v.name, i, flip}
				switch {
				case in(i, rid):
					require.ErrorIs(t, err, cms.ErrWrongRecipient, msg...)
				case in(i, ek):
					require.Equal(t, cms.ErrDecrypt, err, msg...) // unwrapped: no detail
				case in(i, iv), in(i, ct):
					if err != nil {
						require.Equal(t, cms.ErrDecrypt, err, msg...)
					} else {
						require.NotEqual(t, want, pt, msg...)
					}
				default:
					require.ErrorIs(t, err, cms.ErrMalformed, msg...)
				}
			}
		}
	}
}
