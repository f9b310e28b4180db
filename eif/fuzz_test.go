package eif_test

import (
	"bytes"
	"crypto/elliptic"
	"errors"
	"testing"
	"time"

	"github.com/nitrosigner/nitrosigner/eif"
)

// FuzzParse feeds mutated synthetic images (unsigned and signed, whole and
// cut) to Parse, with the CRC recomputed after mutation when recomputeCRC is
// set. It asserts that Parse never panics, that every error wraps
// one of the package's sentinels, and that an accepted image is consistent:
// its sections tile the file, its PCRs are 48 bytes, PCR8 is present
// exactly for signed images, and verifying its signature does not panic.
func FuzzParse(f *testing.F) {
	small := []sec{{tKernel, []byte("kernel")}, {tCmdline, []byte("console=ttyS0")}, {tMetadata, []byte(`{"ImageName":"x"}`)},
		{tRamdisk, []byte("bootstrap")}, {tRamdisk, []byte("app")}}
	var seeds [][]byte
	seeds = append(seeds, refEIF(4, 0, small), refEIF(3, 1, []sec{small[0], small[1], small[3]}))

	s := newSigner(f, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	var signed bytes.Buffer
	if _, err := eif.Build(&signed, eif.BuildConfig{Kernel: []byte("kernel"), Cmdline: "c", Ramdisks: [][]byte{[]byte("b"), []byte("a")},
		Signer: s.key, Certificate: s.certPEM}); err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, signed.Bytes())
	for _, seed := range seeds {
		f.Add(seed, false)
		f.Add(seed, true)
		for _, n := range []int{0, 4, 547, 548, 560, len(seed) / 2, len(seed) - 1} {
			f.Add(seed[:n], false)
		}
	}

	sentinels := []error{eif.ErrFormat, eif.ErrTruncated, eif.ErrChecksum, eif.ErrSignature}
	f.Fuzz(func(t *testing.T, data []byte, recomputeCRC bool) {
		if recomputeCRC && len(data) >= eif.HeaderSize {
			data = fixCRC(bytes.Clone(data)) // let mutations reach the checks after the CRC
		}
		img, err := eif.Parse(data)
		if err != nil {
			if img != nil {
				t.Fatalf("image returned with error %v", err)
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error wraps %d sentinels: %v", n, err)
			}
			return
		}
		end := int64(eif.HeaderSize)
		for i, sec := range img.Sections {
			if sec.Offset != end {
				t.Fatalf("section %d at %d, want %d", i, sec.Offset, end)
			}
			end += eif.SectionHeaderSize + sec.Size
		}
		if end != int64(len(data)) {
			t.Fatalf("sections end at %d, file is %d bytes", end, len(data))
		}
		m := img.Measurements
		if len(m.PCR0) != eif.PCRSize || len(m.PCR1) != eif.PCRSize || len(m.PCR2) != eif.PCRSize {
			t.Fatalf("bad PCR sizes")
		}
		if (img.Signature == nil) != (m.PCR8 == nil) {
			t.Fatalf("PCR8 present: %v, signature present: %v", m.PCR8 != nil, img.Signature != nil)
		}
		if img.Signature != nil {
			if err := img.Signature.Verify(m.PCR0); err != nil && !errors.Is(err, eif.ErrSignature) {
				t.Fatalf("Verify error does not wrap ErrSignature: %v", err)
			}
		}
	})
}
