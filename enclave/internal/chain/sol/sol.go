// Package sol decodes, checks and signs Solana messages inside the enclave.
//
// It runs inside the enclave on untrusted bytes. A message (legacy, or
// versioned v0 with its address table lookups) is decoded strictly: compact-u16
// lengths must be canonical, the header consistent with the account keys,
// every index in range, the size within Solana's 1232-byte transaction limit,
// and nothing may follow the message. These are the checks of Solana's own
// Message::sanitize, plus duplicate account keys and lookup table accounts
// loaded twice, which the network refuses at load time. What is signed is
// described in a [signerv1.SolanaSummary] so that a policy can judge it.
//
// The summary lists System Program transfers (Transfer and TransferWithSeed)
// found among the top-level instructions; what other programs do with the
// signature (including transfers made by cross-program invocation) is not
// decoded. Accounts a v0 message loads from address lookup tables have no
// address in the message itself: they are named "lookup:<table>#<index>".
//
// Errors for malformed input wrap [sign.ErrInvalidPayload]; their text starts
// with "solana_message: " and names the problem. They never carry key
// material. This package keeps no keys and does not zeroize the caller's
// private key.
package sol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/mr-tron/base58"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// systemProgram is the System Program id, 11111111111111111111111111111111.
var systemProgram = make([]byte, keySize)

// System Program instruction numbers (the u32 little-endian tag of its
// bincode-encoded instruction enum).
const (
	systemCreateAccount         = 0
	systemTransfer              = 2
	systemCreateAccountWithSeed = 3
	systemWithdrawNonceAccount  = 5
	systemTransferWithSeed      = 11
)

// payloadError is an error in the caller's message. It wraps
// sign.ErrInvalidPayload without adding that sentinel's text.
type payloadError struct{ msg string }

func (e *payloadError) Error() string { return e.msg }
func (e *payloadError) Unwrap() error { return sign.ErrInvalidPayload }

// invalid makes a payload error about the solana_message field.
func invalid(format string, args ...any) error {
	return &payloadError{msg: "solana_message: " + fmt.Sprintf(format, args...)}
}

func encode58(b []byte) string { return base58.Encode(b) }

// Address returns the base58 address of a 32-byte ed25519 public key. The
// key comes from the keyring, so a bad key is a plain error (not
// [sign.ErrInvalidPayload]).
func Address(pub []byte) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("sol: public key must be %d bytes, got %d", ed25519.PublicKeySize, len(pub))
	}
	return encode58(pub), nil
}

// SignMessage decodes the serialized Solana message msg (legacy, or v0 with
// the 0x80 prefix), checks that pub is one of its required signers, and
// signs the message bytes with the ed25519 key priv (Go's 64-byte encoding,
// whose second half must be pub).
//
// The response carries the 64-byte Signature, the SignedPayload in wire
// format (compact-u16 signature count, one 64-byte slot per required
// signature holding ours in our slot and zeros elsewhere, then the message),
// and a SolanaSummary. KeyId and Algorithm are left for the caller to fill.
//
// A malformed message, one whose signed transaction would exceed
// [MaxTransactionSize], or one that pub does not have to sign ("key <addr> is
// not a required signer of this message") gives an error wrapping
// [sign.ErrInvalidPayload]. A bad key gives one wrapping [sign.ErrInvalidKey].
func SignMessage(priv, pub, msg []byte) (*signerv1.SignResponse, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: ed25519 public key is %d bytes, want %d", sign.ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	if len(priv) != ed25519.PrivateKeySize || !bytes.Equal(priv[ed25519.SeedSize:], pub) {
		return nil, fmt.Errorf("%w: ed25519 private key does not match the public key", sign.ErrInvalidKey)
	}
	m, err := decode(msg)
	if err != nil {
		return nil, err
	}
	slot := -1
	for i, k := range m.Keys[:m.NumRequiredSignatures] {
		if bytes.Equal(k, pub) {
			slot = i
			break
		}
	}
	if slot < 0 {
		return nil, invalid("key %s is not a required signer of this message", encode58(pub))
	}
	nsig := int(m.NumRequiredSignatures)
	prefix := compactU16Len(nsig) + nsig*SignatureSize
	if size := prefix + len(msg); size > MaxTransactionSize {
		return nil, invalid("the signed transaction would be %d bytes (%s and a %d-byte message), over Solana's %d-byte limit",
			size, count(nsig, "signature"), len(msg), MaxTransactionSize)
	}
	sig, err := sign.Ed25519{}.SignMessage(priv, msg)
	if err != nil {
		return nil, fmt.Errorf("sign solana message: %w", err)
	}
	wire := make([]byte, 0, prefix+len(msg))
	wire = appendCompactU16(wire, nsig)
	wire = append(wire, make([]byte, nsig*SignatureSize)...)
	copy(wire[compactU16Len(nsig)+slot*SignatureSize:], sig)
	wire = append(wire, msg...)
	return &signerv1.SignResponse{
		Signature:     sig,
		SignedPayload: wire,
		Summary: &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Solana{
			Solana: m.summary(pub),
		}},
	}, nil
}

// summary describes m for a policy; signer is our key.
func (m *message) summary(signer []byte) *signerv1.SolanaSummary {
	s := &signerv1.SolanaSummary{
		Version:             "legacy",
		FeePayer:            encode58(m.Keys[0]),
		Signer:              encode58(signer),
		RecentBlockhash:     encode58(m.RecentBlockhash),
		RequiredSignatures:  uint32(m.NumRequiredSignatures),
		AddressTableLookups: uint32(len(m.AddressTableLookups)),
	}
	if m.Version == version0 {
		s.Version = "v0"
	}
	seen := make(map[uint8]bool)
	for i, in := range m.Instructions {
		program := encode58(m.Keys[in.ProgramIndex])
		if !seen[in.ProgramIndex] {
			seen[in.ProgramIndex] = true
			s.ProgramIds = append(s.ProgramIds, program)
		}
		if t := m.transfer(in); t != nil {
			s.Transfers = append(s.Transfers, t)
			continue
		}
		s.UndescribedInstructions = append(s.UndescribedInstructions, fmt.Sprintf("%d:%s", i, program))
	}
	return s
}

// transfer decodes a System Program instruction that moves lamports out of
// an account (Transfer, TransferWithSeed, CreateAccount,
// CreateAccountWithSeed, WithdrawNonceAccount), or returns nil for any
// other instruction, which the summary then lists as undescribed. The
// System Program's decoder allows bytes after the instruction, so they are
// allowed here too; an instruction too short to decode, or with too few
// accounts, fails on chain and moves nothing (it is listed as undescribed).
func (m *message) transfer(in instruction) *signerv1.SolanaTransfer {
	if !bytes.Equal(m.Keys[in.ProgramIndex], systemProgram) || len(in.Data) < 4 {
		return nil
	}
	// move reads the lamports at lamportsAt when the data is at least
	// minLen long (what the System Program needs to decode it).
	move := func(minLen, lamportsAt, from, to int) *signerv1.SolanaTransfer {
		if len(in.Data) < max(minLen, lamportsAt+8) || len(in.Accounts) <= max(from, to) {
			return nil
		}
		return &signerv1.SolanaTransfer{
			From: m.account(int(in.Accounts[from])), To: m.account(int(in.Accounts[to])),
			Lamports: binary.LittleEndian.Uint64(in.Data[lamportsAt : lamportsAt+8]),
		}
	}
	switch binary.LittleEndian.Uint32(in.Data[:4]) {
	case systemTransfer:
		return move(12, 4, 0, 1) // lamports; from (signer), to
	case systemTransferWithSeed:
		return move(12, 4, 0, 2) // lamports, seed, owner; from (derived), base (signer), to
	case systemCreateAccount:
		return move(4+8+8+32, 4, 0, 1) // lamports, space, owner; funding (signer), new account
	case systemWithdrawNonceAccount:
		return move(12, 4, 0, 1) // lamports; nonce account, recipient, ...
	case systemCreateAccountWithSeed:
		// base (32), seed (u64 length + bytes), lamports, space, owner.
		if len(in.Data) < 44 {
			return nil
		}
		n := binary.LittleEndian.Uint64(in.Data[36:44])
		if n > uint64(len(in.Data)) {
			return nil
		}
		at := 44 + int(n)
		return move(at+8+8+32, at, 0, 1) // funding (signer), created account
	}
	return nil
}

// compactU16Len is the encoded size of v as a compact-u16.
func compactU16Len(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	default:
		return 3
	}
}

// appendCompactU16 appends v (0..65535) as a compact-u16.
func appendCompactU16(b []byte, v int) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
