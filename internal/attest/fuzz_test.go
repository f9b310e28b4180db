package attest_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nitrosigner/nitrosigner/internal/attest"
)

// FuzzVerify feeds mutated real documents to Verify. clock picks the
// verification time among the real documents' timestamps, so mutations that
// keep a document valid reach every check. It asserts that Verify never
// panics (nor needs its recover), that errors come with a nil Document, and
// that an accepted document is fully populated and byte-identical to a
// seed.
func FuzzVerify(f *testing.F) {
	var seeds [][]byte
	for i, rd := range realDocs {
		doc := readDoc(f, rd.file)
		seeds = append(seeds, doc)
		f.Add(doc, uint8(i))
		f.Add(append([]byte{0xd2}, doc...), uint8(i))
		for _, n := range []int{1, 2, 8, 10, len(doc) / 2, len(doc) - 97, len(doc) - 1} {
			f.Add(doc[:n], uint8(i))
		}
	}
	f.Add([]byte{}, uint8(0))

	f.Fuzz(func(t *testing.T, doc []byte, clock uint8) {
		rd := realDocs[int(clock)%len(realDocs)]
		d, err := attest.Verify(doc, attest.Options{Now: rd.at(), AllowDebug: true})
		if err != nil {
			if errors.Is(err, attest.ErrPanic) {
				t.Fatalf("verifier panicked: %v", err)
			}
			if d != nil {
				t.Fatalf("document returned with error %v", err)
			}
			return
		}
		if d == nil || d.ModuleID == "" || d.Digest != "SHA384" || d.Timestamp.IsZero() ||
			len(d.PCRs) == 0 || d.Certificate == nil || len(d.CABundle) == 0 {
			t.Fatalf("accepted an incomplete document: %+v", d)
		}
		if !bytes.Equal(d.CABundle[0].Raw, attest.AWSRoot().Raw) {
			t.Fatalf("accepted a document not rooted at the aws root")
		}
		// The envelope must be minimally encoded and the payload is signed,
		// so only a seed (or a seed in tag 18) can verify.
		if !isSeed(seeds, doc) {
			t.Fatalf("accepted a non-seed input (%d bytes, module %s)", len(doc), d.ModuleID)
		}
	})
}

// isSeed reports whether doc is a seed document, untagged or with tag 18.
func isSeed(seeds [][]byte, doc []byte) bool {
	for _, s := range seeds {
		if bytes.Equal(doc, s) || (len(doc) == len(s)+1 && doc[0] == 0xd2 && bytes.Equal(doc[1:], s)) {
			return true
		}
	}
	return false
}
