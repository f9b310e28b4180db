package eif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Errors returned by [Read]. Each error wraps exactly one of them, with a
// message naming the section and the numbers involved.
var (
	// ErrFormat reports an image that is not a well-formed EIF: bad magic,
	// unsupported version, unknown section type, sections out of place or
	// of the wrong number, header and section headers that disagree,
	// trailing bytes, invalid metadata JSON.
	ErrFormat = errors.New("eif: malformed image")
	// ErrTruncated reports an image that ends inside its header or a
	// section.
	ErrTruncated = errors.New("eif: truncated image")
	// ErrChecksum reports an image whose CRC-32 does not match its
	// contents: the file was corrupted after it was built.
	ErrChecksum = errors.New("eif: checksum mismatch")
	// ErrSignature reports a signature section that cannot be decoded, or
	// (from [Signature.Verify]) a signature that does not verify.
	ErrSignature = errors.New("eif: bad signature")
)

// maxSmallSection bounds the sections Read keeps in memory (cmdline,
// metadata, signature); kernels and ramdisks are streamed.
const maxSmallSection = 16 << 20

// chunkSize is the read size for streamed sections.
const chunkSize = 1 << 20

// Image describes an enclave image file as read by [Read].
type Image struct {
	Version       uint16
	Flags         uint16 // bit 0 set: aarch64 image
	DefaultMemory uint64 // bytes; nitro-cli run-enclave ignores it
	DefaultCPUs   uint64
	CRC32         uint32 // stored in the header and checked against the contents
	Sections      []Section
	// Cmdline is the kernel command line (measured in PCR0 and PCR1).
	Cmdline string
	// Metadata is the metadata section (not measured), nil if absent.
	Metadata *Metadata
	// Signature is the signature section, nil for an unsigned image. Read
	// decodes it but does not verify it; call [Signature.Verify] with
	// Measurements.PCR0.
	Signature *Signature
	// Measurements are the PCRs the enclave reports outside debug mode.
	Measurements Measurements
}

// Arch returns "aarch64" or "x86_64" from the header flags.
func (img *Image) Arch() string {
	if img.Flags&flagAArch64 != 0 {
		return "aarch64"
	}
	return "x86_64"
}

// Section is one section of an image.
type Section struct {
	Type   SectionType
	Flags  uint16
	Offset int64 // file offset of the section header; the payload follows it
	Size   int64 // payload size
}

// Metadata is the JSON of the metadata section (EifIdentityInfo in
// src/defs/mod.rs). It is not measured.
type Metadata struct {
	ImageName      string          `json:"ImageName"`
	ImageVersion   string          `json:"ImageVersion"`
	BuildMetadata  BuildMetadata   `json:"BuildMetadata"`
	DockerInfo     json.RawMessage `json:"DockerInfo"`
	CustomMetadata json.RawMessage `json:"CustomMetadata"`
}

// BuildMetadata is the "BuildMetadata" object of [Metadata] (EifBuildInfo).
type BuildMetadata struct {
	BuildTime        string `json:"BuildTime"`
	BuildTool        string `json:"BuildTool"`
	BuildToolVersion string `json:"BuildToolVersion"`
	OperatingSystem  string `json:"OperatingSystem"`
	KernelVersion    string `json:"KernelVersion"`
}

// Parse reads an image held in memory; see [Read].
func Parse(data []byte) (*Image, error) {
	return Read(bytes.NewReader(data), int64(len(data)))
}

// Read reads the image of size bytes in r, checks its structure and CRC-32
// and computes its measurements (PCR0, PCR1, PCR2 and, for signed images,
// PCR8) while streaming through it once.
//
// Read is stricter than nitro-cli, so that the measurements it reports are
// the only reading of the file: sections must be contiguous and in the
// header's order, start with the kernel and the cmdline, and end exactly at
// the end of the file; the header's offsets and sizes must match the
// section headers, and unused header slots must be zero. There must be at
// least one ramdisk and at most one metadata and one signature section.
//
// The CRC-32 (IEEE, as zlib's crc32) covers the header except its last four
// bytes (the CRC field itself), then every section header and payload in
// file order (src/utils/eif_reader.rs, and QEMU's hw/core/eif.c).
//
// Errors wrap [ErrFormat], [ErrTruncated], [ErrChecksum] or [ErrSignature],
// or are errors of r.
func Read(r io.ReaderAt, size int64) (*Image, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte EIF header", ErrTruncated, size, HeaderSize)
	}
	hb := make([]byte, HeaderSize)
	if err := readAt(r, hb, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h := decodeHeader(hb)
	if err := h.check(); err != nil {
		return nil, err
	}
	img := &Image{
		Version:       h.version,
		Flags:         h.flags,
		DefaultMemory: h.defaultMem,
		DefaultCPUs:   h.defaultCPUs,
		CRC32:         h.crc32,
	}
	crc := crc32.NewIEEE()
	crc.Write(hb[:HeaderSize-4])
	m := newMeasurer()
	var rawMetadata, rawSignature []byte

	pos := int64(HeaderSize)
	shb := make([]byte, SectionHeaderSize)
	var buf []byte
	for i := range int(h.numSections) {
		if h.offsets[i] != uint64(pos) {
			return nil, fmt.Errorf("%w: section %d starts at offset %d but the header says %d", ErrFormat, i, pos, h.offsets[i])
		}
		if size-pos < SectionHeaderSize {
			return nil, fmt.Errorf("%w: file ends at offset %d, inside the header of section %d", ErrTruncated, size, i)
		}
		if err := readAt(r, shb, pos); err != nil {
			return nil, fmt.Errorf("read section %d header: %w", i, err)
		}
		crc.Write(shb)
		sh := decodeSectionHeader(shb)
		if sh.typ == SectionInvalid || sh.typ > SectionMetadata {
			return nil, fmt.Errorf("%w: section %d has unknown type %d", ErrFormat, i, uint16(sh.typ))
		}
		if sh.size != h.sizes[i] {
			return nil, fmt.Errorf("%w: section %d (%s) header says %d bytes but the EIF header says %d", ErrFormat, i, sh.typ, sh.size, h.sizes[i])
		}
		pos += SectionHeaderSize
		if remain := size - pos; sh.size > uint64(remain) {
			return nil, fmt.Errorf("%w: section %d (%s) is %d bytes but only %d remain in the file", ErrTruncated, i, sh.typ, sh.size, remain)
		}
		n := int64(sh.size)
		img.Sections = append(img.Sections, Section{Type: sh.typ, Flags: sh.flags, Offset: pos - SectionHeaderSize, Size: n})

		switch sh.typ {
		case SectionCmdline, SectionMetadata, SectionSignature:
			if n > maxSmallSection {
				return nil, fmt.Errorf("%w: section %d (%s) is %d bytes, more than the %d-byte limit", ErrFormat, i, sh.typ, n, maxSmallSection)
			}
			p := make([]byte, n)
			if err := readAt(r, p, pos); err != nil {
				return nil, fmt.Errorf("read section %d (%s): %w", i, sh.typ, err)
			}
			crc.Write(p)
			m.write(sh.typ, p)
			switch sh.typ {
			case SectionCmdline:
				img.Cmdline = string(p)
			case SectionMetadata:
				rawMetadata = p
			case SectionSignature:
				rawSignature = p
			}
		default: // kernel, ramdisk: stream
			if buf == nil {
				buf = make([]byte, min(chunkSize, size))
			}
			for off := int64(0); off < n; {
				p := buf[:min(int64(len(buf)), n-off)]
				if err := readAt(r, p, pos+off); err != nil {
					return nil, fmt.Errorf("read section %d (%s): %w", i, sh.typ, err)
				}
				crc.Write(p)
				m.write(sh.typ, p)
				off += int64(len(p))
			}
			if sh.typ == SectionRamdisk {
				m.endRamdisk()
			}
		}
		pos += n
	}
	if pos != size {
		return nil, fmt.Errorf("%w: %d bytes after the last section", ErrFormat, size-pos)
	}
	if got := crc.Sum32(); got != h.crc32 {
		return nil, fmt.Errorf("%w: the header says CRC-32 %08x but the contents give %08x (the file is corrupted)", ErrChecksum, h.crc32, got)
	}
	if err := checkSections(img.Sections); err != nil {
		return nil, err
	}

	img.Measurements = m.sum()
	if rawMetadata != nil {
		img.Metadata = new(Metadata)
		if err := json.Unmarshal(rawMetadata, img.Metadata); err != nil {
			return nil, fmt.Errorf("%w: metadata section is not the expected JSON object: %v", ErrFormat, err)
		}
	}
	if rawSignature != nil {
		sig, err := parseSignature(rawSignature)
		if err != nil {
			return nil, err
		}
		img.Signature = sig
		img.Measurements.PCR8 = PCR8(sig.Certificate)
	}
	return img, nil
}

// check validates the fixed part of the header.
func (h *header) check() error {
	if h.magic != magic {
		return fmt.Errorf("%w: not an EIF file (magic %q, want %q)", ErrFormat, h.magic[:], magic[:])
	}
	if h.version < 2 {
		return fmt.Errorf("%w: version %d has no checksum; only version 2 and later are supported", ErrFormat, h.version)
	}
	if h.numSections == 0 || h.numSections > MaxSections {
		return fmt.Errorf("%w: %d sections (want 1 to %d)", ErrFormat, h.numSections, MaxSections)
	}
	for i := int(h.numSections); i < MaxSections; i++ {
		if h.offsets[i] != 0 || h.sizes[i] != 0 {
			return fmt.Errorf("%w: unused section slot %d is not zero", ErrFormat, i)
		}
	}
	return nil
}

// checkSections checks the order and number of sections. nitro-cli writes
// kernel, cmdline, metadata, the ramdisks, then the signature; the PCR
// formulas assume kernel and cmdline come first.
func checkSections(s []Section) error {
	count := make(map[SectionType]int)
	for _, sec := range s {
		count[sec.Type]++
	}
	switch {
	case s[0].Type != SectionKernel:
		return fmt.Errorf("%w: section 0 is %s, want kernel", ErrFormat, s[0].Type)
	case len(s) < 2 || s[1].Type != SectionCmdline:
		return fmt.Errorf("%w: section 1 is missing or not the cmdline", ErrFormat)
	case count[SectionKernel] != 1 || count[SectionCmdline] != 1:
		return fmt.Errorf("%w: %d kernel and %d cmdline sections, want one each", ErrFormat, count[SectionKernel], count[SectionCmdline])
	case count[SectionRamdisk] == 0:
		return fmt.Errorf("%w: no ramdisk section", ErrFormat)
	case count[SectionMetadata] > 1 || count[SectionSignature] > 1:
		return fmt.Errorf("%w: %d metadata and %d signature sections, want at most one each", ErrFormat, count[SectionMetadata], count[SectionSignature])
	}
	return nil
}

// readAt fills p from r at off.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil // ReadAt may report io.EOF with a full read at the end
	}
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
