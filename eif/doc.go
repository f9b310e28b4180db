// Package eif reads, measures and builds AWS Nitro Enclaves image files
// (EIF), the files nitro-cli build-enclave writes and run-enclave boots.
//
// It answers one question offline: which PCR values will an enclave booted
// from this image report? Those values go into KMS key policies
// (kms:RecipientAttestation:PCRn) and into the expected PCRs of attestation
// checks, so a mistake here either locks the keys away or lets the wrong
// code at them. The package runs on operators' machines and in CI, never
// inside the enclave. It treats every image as untrusted input: [Read]
// never panics, streams kernels and ramdisks instead of loading them, and
// bounds every allocation by the file's size.
//
// # Format
//
// All integers are big-endian. An image is a 548-byte header followed by up
// to 32 sections, each a 12-byte section header and its payload:
//
//	header:  magic ".eif" | version u16 | flags u16 (bit 0: aarch64) |
//	         default_mem u64 | default_cpus u64 | reserved u16 |
//	         num_sections u16 | section_offsets [32]u64 | section_sizes [32]u64 |
//	         unused u32 | eif_crc32 u32
//	section: type u16 (1 kernel, 2 cmdline, 3 ramdisk, 4 signature,
//	         5 metadata) | flags u16 | size u64 | payload
//
// section_offsets point at section headers, section_sizes count payload
// bytes. The CRC-32 (IEEE) covers the header without its CRC field, then
// every section header and payload in order.
//
// # Measurements
//
// The PCRs hash section payloads only, never headers, metadata or the
// signature, and end with one extend of a zero register,
// extend(x) = SHA-384(48 zero bytes || x):
//
//	PCR0 = extend(SHA-384(kernel || cmdline || ramdisk[0] || ... || ramdisk[n-1]))
//	PCR1 = extend(SHA-384(kernel || cmdline || ramdisk[0]))
//	PCR2 = extend(SHA-384(ramdisk[1] || ... || ramdisk[n-1]))
//	PCR3 = SHA-384(48 zero bytes || IAM role ARN of the parent)      see [PCR3]
//	PCR4 = SHA-384(48 zero bytes || instance ID of the parent)       see [PCR4]
//	PCR8 = extend(SHA-384(DER of the signing certificate))           see [PCR8]
//
// ramdisk[0] is the bootstrap ramdisk (AWS init and the NSM driver), so PCR1
// identifies the kernel and boot code of a nitro-cli release and PCR2 the
// application, including its command line and environment (the Docker
// image's CMD and ENV, which nitro-cli writes into the application ramdisk).
// An enclave started in debug mode reports PCR0, PCR1 and PCR2 as zeros
// instead.
//
// # Sources
//
// The layout, CRC coverage and PCR grouping were checked against
// aws/aws-nitro-enclaves-image-format src/defs/mod.rs (EifHeader,
// EifSectionHeader, PcrSignature, PcrInfo, EifIdentityInfo),
// src/defs/eif_hasher.rs (tpm_extend_finalize_reset), src/utils/mod.rs
// (EifBuilder: section order and offsets, compute_crc, measure, get_pcrs)
// and src/utils/eif_reader.rs (EifReader::from_eif), against QEMU's
// independent reader hw/core/eif.c, and against aws/aws-nitro-enclaves-cli
// src/lib.rs (blobs/cmdline is trimmed; build-enclave prints
// {"Measurements": ...} on stdout) and enclave_build/src/{lib,docker,
// yaml_generator}.rs (ramdisk order and contents, cmd/env files). The
// signature format follows awslabs/aws-nitro-enclaves-cose src/sign.rs. The
// PCR3 and PCR4 formulas reproduce the examples of the AWS Nitro Enclaves
// User Guide ("Where to get an enclave's measurements") exactly, and PCR4
// matches real attestation documents (see the tests). No real EIF is
// published small enough to serve as a test vector; the tests build
// synthetic ones whose PCRs they compute independently.
//
// # Building
//
// [Build] writes an image from a kernel, its command line and ramdisks, and
// [AppRamdisk] makes the application ramdisk from one static binary, without
// Docker or linuxkit. The output depends only on the inputs, so the same
// inputs always give the same file and the same PCRs. To get the PCR1 of a
// nitro-cli build, reuse its kernel (blobs/bzImage), command line
// (blobs/cmdline) and bootstrap ramdisk (bootstrap-initrd.img-initrd.img in
// nitro-cli's artifacts directory, $NITRO_CLI_ARTIFACTS or ~/.nitro_cli).
package eif
