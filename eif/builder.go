package eif

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Defaults of [BuildConfig], the values nitro-cli's EifBuilder writes.
const (
	DefaultMemory = 1 << 30
	DefaultCPUs   = 2
)

// BuildConfig describes the image [Build] writes.
type BuildConfig struct {
	// Kernel is the kernel image (bzImage on x86_64, Image on aarch64),
	// nitro-cli's blobs/bzImage.
	Kernel []byte
	// Cmdline is the kernel command line, without a trailing NUL.
	// nitro-cli uses the contents of blobs/cmdline with surrounding white
	// space trimmed.
	Cmdline string
	// Ramdisks are the ramdisks in boot order. The first is the bootstrap
	// ramdisk (AWS init and nsm.ko), measured with the kernel in PCR1; the
	// others hold the application and are measured in PCR2 (see
	// [AppRamdisk]).
	Ramdisks [][]byte
	// AArch64 marks the image as an aarch64 image (header flag bit 0).
	AArch64 bool
	// DefaultMemory and DefaultCPUs go into the header; zero means
	// [DefaultMemory] and [DefaultCPUs]. nitro-cli run-enclave ignores them.
	DefaultMemory uint64
	DefaultCPUs   uint64
	// Metadata, when not nil, is written as the (unmeasured) metadata
	// section. Keep its BuildTime fixed for byte-identical output.
	Metadata *Metadata
	// Signer and Certificate, when set, sign the image: Signer is the
	// ECDSA key (P-256, P-384 or P-521) of Certificate, a PEM file whose
	// first CERTIFICATE block is the signing certificate. The signature
	// section then carries the whole PEM file, and PCR8 is measured. ECDSA
	// signatures are randomised, so signed images differ from build to
	// build in their signature section, but not in their measurements.
	Signer      crypto.Signer
	Certificate []byte
}

// Build writes the image described by cfg to w and returns its
// measurements. Sections are laid out as nitro-cli lays them out (kernel,
// cmdline, metadata, ramdisks, signature, each after a 12-byte section
// header, contiguous after the 548-byte EIF header), with section flags 0
// and the CRC-32 over everything but the CRC field. The same unsigned
// configuration always gives the same bytes.
func Build(w io.Writer, cfg BuildConfig) (Measurements, error) {
	if len(cfg.Kernel) == 0 {
		return Measurements{}, errors.New("eif: build: no kernel")
	}
	if len(cfg.Ramdisks) == 0 {
		return Measurements{}, errors.New("eif: build: no ramdisk (the first one must be the bootstrap ramdisk)")
	}
	if strings.ContainsRune(cfg.Cmdline, 0) {
		return Measurements{}, errors.New("eif: build: kernel command line contains a NUL byte")
	}
	if (cfg.Signer == nil) != (cfg.Certificate == nil) {
		return Measurements{}, errors.New("eif: build: a signing key and a signing certificate go together")
	}

	m := Measure(cfg.Kernel, cfg.Cmdline, cfg.Ramdisks...)
	type section struct {
		typ  SectionType
		data []byte
	}
	sections := []section{{SectionKernel, cfg.Kernel}, {SectionCmdline, []byte(cfg.Cmdline)}}
	if cfg.Metadata != nil {
		meta, err := json.Marshal(cfg.Metadata)
		if err != nil {
			return Measurements{}, fmt.Errorf("eif: build: metadata: %w", err)
		}
		sections = append(sections, section{SectionMetadata, meta})
	}
	for _, r := range cfg.Ramdisks {
		sections = append(sections, section{SectionRamdisk, r})
	}
	if cfg.Signer != nil {
		cert, err := ParseCertificatePEM(cfg.Certificate)
		if err != nil {
			return Measurements{}, fmt.Errorf("eif: build: signing certificate: %w", err)
		}
		pub, ok := cfg.Signer.Public().(*ecdsa.PublicKey)
		if !ok || !pub.Equal(cert.PublicKey) {
			return Measurements{}, errors.New("eif: build: the signing key does not belong to the signing certificate")
		}
		sig, err := signatureSection(cfg.Signer, cfg.Certificate, m.PCR0)
		if err != nil {
			return Measurements{}, fmt.Errorf("eif: build: %w", err)
		}
		sections = append(sections, section{SectionSignature, sig})
		m.PCR8 = PCR8(cert)
	}
	if len(sections) > MaxSections {
		return Measurements{}, fmt.Errorf("eif: build: %d sections, more than %d", len(sections), MaxSections)
	}

	h := header{
		magic:       magic,
		version:     Version,
		defaultMem:  cmp.Or(cfg.DefaultMemory, DefaultMemory),
		defaultCPUs: cmp.Or(cfg.DefaultCPUs, DefaultCPUs),
		numSections: uint16(len(sections)),
	}
	if cfg.AArch64 {
		h.flags |= flagAArch64
	}
	off := uint64(HeaderSize)
	for i, s := range sections {
		h.offsets[i] = off
		h.sizes[i] = uint64(len(s.data))
		off += SectionHeaderSize + uint64(len(s.data))
	}
	crc := crc32.NewIEEE()
	crc.Write(h.encode()[:HeaderSize-4])
	for _, s := range sections {
		crc.Write(sectionHeader{typ: s.typ, size: uint64(len(s.data))}.encode())
		crc.Write(s.data)
	}
	h.crc32 = crc.Sum32()

	if _, err := w.Write(h.encode()); err != nil {
		return Measurements{}, err
	}
	for _, s := range sections {
		if _, err := w.Write(sectionHeader{typ: s.typ, size: uint64(len(s.data))}.encode()); err != nil {
			return Measurements{}, err
		}
		if _, err := w.Write(s.data); err != nil {
			return Measurements{}, err
		}
	}
	return m, nil
}
