//go:build !nosim

package nsmsim

import (
	"crypto/sha512"
	"slices"
)

const (
	// numPCRs is the number of PCRs of the device (DescribeNSM max_pcrs).
	numPCRs = 32
	// numBootLocked is the number of PCRs locked at start: PCR0–15.
	numBootLocked = 16
	// pcrSize is the size of a SHA-384 PCR.
	pcrSize = sha512.Size384
)

// The simulated boot components measured together with [Config.Image]. They
// stand in for the EIF's kernel, kernel command line and AWS bootstrap
// initramfs, which are the same for every image built with one nitro-cli
// version; that is why PCR1 does not change with the application image.
const (
	simKernel    = "nitrosigner-sim-kernel-v1"
	simCmdline   = "nitrosigner-sim-cmdline-v1"
	simBootstrap = "nitrosigner-sim-bootstrap-ramdisk-v1"
)

// extendZero is the "TPM-style extend" of an all-zero register used by EIF
// measurements: SHA-384(48 zero bytes || x).
func extendZero(x []byte) []byte {
	var zero [pcrSize]byte
	return extend(zero[:], x)
}

// extend returns SHA-384(old || data), the NSM's ExtendPCR operation.
func extend(old, data []byte) []byte {
	h := sha512.New384()
	h.Write(old)
	h.Write(data)
	return h.Sum(nil)
}

// Measure computes PCR0, PCR1 and PCR2 of an enclave image file made of the
// given kernel, kernel command line, bootstrap ramdisk and a single customer
// ramdisk app, with the formulas of aws-nitro-enclaves-image-format (payload
// bytes only, no section headers):
//
//	PCR0 = extend(SHA-384(kernel || cmdline || bootstrap || app))
//	PCR1 = extend(SHA-384(kernel || cmdline || bootstrap))
//	PCR2 = extend(SHA-384(app))
//
// where extend(x) = SHA-384(48 zero bytes || x). Each result is 48 bytes.
func Measure(kernel, cmdline, bootstrap, app []byte) (pcr0, pcr1, pcr2 []byte) {
	h0 := sha512.New384()
	h1 := sha512.New384()
	h2 := sha512.New384()
	for _, p := range [][]byte{kernel, cmdline, bootstrap} {
		h0.Write(p)
		h1.Write(p)
	}
	h0.Write(app)
	h2.Write(app)
	return extendZero(h0.Sum(nil)), extendZero(h1.Sum(nil)), extendZero(h2.Sum(nil))
}

// MeasureImage returns the PCR0, PCR1 and PCR2 a [Simulator] reports for the
// application image image outside debug mode: [Measure] over the simulator's
// fixed kernel, cmdline and bootstrap strings with image as the customer
// ramdisk. Use it to compute the measurements a key policy should expect.
func MeasureImage(image []byte) (pcr0, pcr1, pcr2 []byte) {
	return Measure([]byte(simKernel), []byte(simCmdline), []byte(simBootstrap), image)
}

// MeasureInstanceID returns PCR4 for a parent instance id:
// SHA-384(48 zero bytes || id), the raw string, not pre-hashed.
func MeasureInstanceID(id string) []byte { return extendZero([]byte(id)) }

// MeasureRoleARN returns PCR3 for a parent IAM role ARN:
// SHA-384(48 zero bytes || arn), the raw string, not pre-hashed. An enclave
// whose parent has no role reports PCR3 as 48 zero bytes instead; this
// function does not special-case the empty string.
func MeasureRoleARN(arn string) []byte { return extendZero([]byte(arn)) }

// pcrBank is the device's register file. It is not safe for concurrent use;
// the Simulator serialises access.
type pcrBank struct {
	val    [numPCRs][pcrSize]byte
	locked [numPCRs]bool
}

// lockedIndexes returns the locked PCR indexes in ascending order.
func (b *pcrBank) lockedIndexes() []int {
	var out []int
	for i, l := range b.locked {
		if l {
			out = append(out, i)
		}
	}
	return out
}

// lockedValues returns copies of the locked PCR values by index.
func (b *pcrBank) lockedValues() map[int][]byte {
	m := make(map[int][]byte)
	for _, i := range b.lockedIndexes() {
		m[i] = slices.Clone(b.val[i][:])
	}
	return m
}
