package eif

import (
	"encoding/binary"
	"fmt"
)

// Layout constants of the EIF format (aws-nitro-enclaves-image-format
// src/defs/mod.rs; all integers big-endian).
const (
	// HeaderSize is the size of the EIF header that starts the file.
	HeaderSize = 548
	// SectionHeaderSize is the size of the header in front of each section.
	SectionHeaderSize = 12
	// MaxSections is the number of section slots in the header.
	MaxSections = 32
	// Version is the format version this package writes. Read accepts
	// version 2 (the first with a checksum) and later.
	Version = 4
)

// magic starts every EIF: ".eif" in ASCII.
var magic = [4]byte{'.', 'e', 'i', 'f'}

// flagAArch64 is header flag bit 0 (EIF_HDR_ARCH_ARM64): set for aarch64
// images, clear for x86_64.
const flagAArch64 = 0x1

// SectionType is the type field of a section header.
type SectionType uint16

// Section types (EifSectionType in src/defs/mod.rs).
const (
	SectionInvalid   SectionType = 0
	SectionKernel    SectionType = 1
	SectionCmdline   SectionType = 2
	SectionRamdisk   SectionType = 3
	SectionSignature SectionType = 4 // since version 3
	SectionMetadata  SectionType = 5 // since version 4
)

// String returns the lowercase name of t, or "type N" for unknown values.
func (t SectionType) String() string {
	switch t {
	case SectionInvalid:
		return "invalid"
	case SectionKernel:
		return "kernel"
	case SectionCmdline:
		return "cmdline"
	case SectionRamdisk:
		return "ramdisk"
	case SectionSignature:
		return "signature"
	case SectionMetadata:
		return "metadata"
	default:
		return fmt.Sprintf("type %d", uint16(t))
	}
}

// header is the decoded EIF header. Field order is the on-disk order:
//
//	magic[4] | version u16 | flags u16 | default_mem u64 | default_cpus u64 |
//	reserved u16 | num_sections u16 | section_offsets[32] u64 |
//	section_sizes[32] u64 | unused u32 | eif_crc32 u32
//
// (4+2+2+8+8+2+2+256+256+4+4 = 548 bytes). section_offsets[i] is the file
// offset of section i's 12-byte section header, section_sizes[i] the size of
// its payload.
type header struct {
	magic       [4]byte
	version     uint16
	flags       uint16
	defaultMem  uint64
	defaultCPUs uint64
	reserved    uint16
	numSections uint16
	offsets     [MaxSections]uint64
	sizes       [MaxSections]uint64
	unused      uint32
	crc32       uint32
}

func decodeHeader(b []byte) header {
	var h header
	copy(h.magic[:], b[0:4])
	h.version = binary.BigEndian.Uint16(b[4:])
	h.flags = binary.BigEndian.Uint16(b[6:])
	h.defaultMem = binary.BigEndian.Uint64(b[8:])
	h.defaultCPUs = binary.BigEndian.Uint64(b[16:])
	h.reserved = binary.BigEndian.Uint16(b[24:])
	h.numSections = binary.BigEndian.Uint16(b[26:])
	for i := range MaxSections {
		h.offsets[i] = binary.BigEndian.Uint64(b[28+8*i:])
		h.sizes[i] = binary.BigEndian.Uint64(b[28+8*MaxSections+8*i:])
	}
	h.unused = binary.BigEndian.Uint32(b[540:])
	h.crc32 = binary.BigEndian.Uint32(b[544:])
	return h
}

func (h *header) encode() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, h.magic[:]...)
	b = binary.BigEndian.AppendUint16(b, h.version)
	b = binary.BigEndian.AppendUint16(b, h.flags)
	b = binary.BigEndian.AppendUint64(b, h.defaultMem)
	b = binary.BigEndian.AppendUint64(b, h.defaultCPUs)
	b = binary.BigEndian.AppendUint16(b, h.reserved)
	b = binary.BigEndian.AppendUint16(b, h.numSections)
	for _, o := range h.offsets {
		b = binary.BigEndian.AppendUint64(b, o)
	}
	for _, s := range h.sizes {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	b = binary.BigEndian.AppendUint32(b, h.unused)
	return binary.BigEndian.AppendUint32(b, h.crc32)
}

// sectionHeader is the 12 bytes in front of each section:
// section_type u16 | flags u16 | section_size u64.
type sectionHeader struct {
	typ   SectionType
	flags uint16
	size  uint64
}

func decodeSectionHeader(b []byte) sectionHeader {
	return sectionHeader{
		typ:   SectionType(binary.BigEndian.Uint16(b[0:])),
		flags: binary.BigEndian.Uint16(b[2:]),
		size:  binary.BigEndian.Uint64(b[4:]),
	}
}

func (s sectionHeader) encode() []byte {
	b := make([]byte, 0, SectionHeaderSize)
	b = binary.BigEndian.AppendUint16(b, uint16(s.typ))
	b = binary.BigEndian.AppendUint16(b, s.flags)
	return binary.BigEndian.AppendUint64(b, s.size)
}
