package eif

import (
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"hash"
)

// PCRSize is the size of a PCR value: a SHA-384 digest.
const PCRSize = sha512.Size384

// HashAlgorithm is the "HashAlgorithm" value nitro-cli prints next to the
// measurements (the Rust Debug form of sha2::Sha384).
const HashAlgorithm = "Sha384 { ... }"

// Measurements are the PCR values an enclave booted from an image reports
// outside debug mode. Each is PCRSize bytes.
type Measurements struct {
	PCR0 []byte // the whole image: kernel, cmdline and every ramdisk
	PCR1 []byte // kernel, cmdline and the first (bootstrap) ramdisk
	PCR2 []byte // the remaining (application) ramdisks
	PCR8 []byte // the signing certificate; nil for an unsigned image
}

// NitroCLI returns m the way nitro-cli build-enclave and describe-eif print
// it inside {"Measurements": ...}: "HashAlgorithm" plus "PCR0", "PCR1",
// "PCR2" and, for signed images, "PCR8", as lowercase hex.
func (m Measurements) NitroCLI() map[string]string {
	out := map[string]string{
		"HashAlgorithm": HashAlgorithm,
		"PCR0":          hex.EncodeToString(m.PCR0),
		"PCR1":          hex.EncodeToString(m.PCR1),
		"PCR2":          hex.EncodeToString(m.PCR2),
	}
	if m.PCR8 != nil {
		out["PCR8"] = hex.EncodeToString(m.PCR8)
	}
	return out
}

// extendZero is the "TPM-style extend" of an all-zero register that turns a
// digest into a PCR value: SHA-384(48 zero bytes || x). It is
// EifHasher::tpm_extend_finalize_reset in src/defs/eif_hasher.rs.
func extendZero(x []byte) []byte {
	var zero [PCRSize]byte
	h := sha512.New384()
	h.Write(zero[:])
	h.Write(x)
	return h.Sum(nil)
}

// PCR3 returns the PCR3 of an enclave whose parent instance has the IAM
// role roleARN: SHA-384(48 zero bytes || roleARN), the raw UTF-8 string, not
// pre-hashed (AWS Nitro Enclaves User Guide, "PCR3"). An enclave whose
// parent has no role reports 48 zero bytes instead.
func PCR3(roleARN string) []byte { return extendZero([]byte(roleARN)) }

// PCR4 returns the PCR4 of an enclave whose parent is the EC2 instance
// instanceID: SHA-384(48 zero bytes || instanceID), the raw string (AWS
// Nitro Enclaves User Guide, "PCR4").
func PCR4(instanceID string) []byte { return extendZero([]byte(instanceID)) }

// PCR8 returns the PCR8 of an image signed with cert:
// SHA-384(48 zero bytes || SHA-384(DER of cert)), as nitro-cli pcr
// --signing-certificate and the EIF builder compute it.
func PCR8(cert *x509.Certificate) []byte {
	sum := sha512.Sum384(cert.Raw)
	return extendZero(sum[:])
}

// Measure returns the measurements of an unsigned image made of kernel,
// cmdline and ramdisks (the first one being the bootstrap ramdisk), without
// building it. The formulas, over section payloads only (no EIF or section
// headers, no metadata, no signature), are
//
//	PCR0 = extend(SHA-384(kernel || cmdline || ramdisk[0] || ... || ramdisk[n-1]))
//	PCR1 = extend(SHA-384(kernel || cmdline || ramdisk[0]))
//	PCR2 = extend(SHA-384(ramdisk[1] || ... || ramdisk[n-1]))
//
// where extend(x) = SHA-384(48 zero bytes || x). With a single ramdisk PCR2
// is extend(SHA-384("")).
func Measure(kernel []byte, cmdline string, ramdisks ...[]byte) Measurements {
	m := newMeasurer()
	m.write(SectionKernel, kernel)
	m.write(SectionCmdline, []byte(cmdline))
	for _, r := range ramdisks {
		m.write(SectionRamdisk, r)
		m.endRamdisk()
	}
	return m.sum()
}

// measurer hashes section payloads the way src/utils/eif_reader.rs does:
// kernel and cmdline into the image and bootstrap hashers, the first ramdisk
// into both too, later ramdisks into the image and application hashers.
type measurer struct {
	image, bootstrap, app hash.Hash
	ramdisks              int // ramdisks completely written so far
}

func newMeasurer() *measurer {
	return &measurer{image: sha512.New384(), bootstrap: sha512.New384(), app: sha512.New384()}
}

// write hashes a chunk of a section of type t; other types are ignored.
func (m *measurer) write(t SectionType, p []byte) {
	switch {
	case t == SectionKernel || t == SectionCmdline:
		m.image.Write(p)
		m.bootstrap.Write(p)
	case t == SectionRamdisk && m.ramdisks == 0:
		m.image.Write(p)
		m.bootstrap.Write(p)
	case t == SectionRamdisk:
		m.image.Write(p)
		m.app.Write(p)
	}
}

// endRamdisk marks the end of a ramdisk section.
func (m *measurer) endRamdisk() { m.ramdisks++ }

func (m *measurer) sum() Measurements {
	return Measurements{
		PCR0: extendZero(m.image.Sum(nil)),
		PCR1: extendZero(m.bootstrap.Sum(nil)),
		PCR2: extendZero(m.app.Sum(nil)),
	}
}
