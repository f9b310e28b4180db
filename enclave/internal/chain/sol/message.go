package sol

import (
	"fmt"
)

// Sizes of the Solana wire format.
const (
	// MaxTransactionSize is Solana's packet limit for a whole transaction
	// (signatures and message): 1280 (IPv6 minimum MTU) - 40 (IPv6 header)
	// - 8 (fragment header).
	MaxTransactionSize = 1232
	// keySize is the size of a public key, a program id and a blockhash.
	keySize = 32
	// SignatureSize is the size of an ed25519 signature.
	SignatureSize = 64
	// maxAccounts bounds the account index space: indexes are one byte.
	maxAccounts = 256
	// versionPrefix marks a versioned message; the low 7 bits are the version.
	versionPrefix = 0x80
)

// Version numbers of a decoded message.
const (
	versionLegacy = -1
	version0      = 0
)

// message is a decoded Solana message. Byte slices point into the input.
type message struct {
	Version int // versionLegacy or version0
	// Header.
	NumRequiredSignatures uint8
	NumReadonlySigned     uint8
	NumReadonlyUnsigned   uint8
	Keys                  [][]byte // static account keys, 32 bytes each
	RecentBlockhash       []byte
	Instructions          []instruction
	AddressTableLookups   []lookup // v0 only

	// Sizes of the lookup parts of the account index space.
	numLookupWritable, numLookupReadonly int
}

// instruction is a compiled instruction: indexes into the account space.
type instruction struct {
	ProgramIndex uint8
	Accounts     []byte
	Data         []byte
}

// lookup names accounts loaded from an address lookup table (v0).
type lookup struct {
	Table    []byte
	Writable []byte
	Readonly []byte
}

// numAccounts is the size of the account index space: static keys, then the
// writable lookup accounts of every table in order, then the read-only ones.
func (m *message) numAccounts() int {
	return len(m.Keys) + m.numLookupWritable + m.numLookupReadonly
}

// reader walks the message bytes; every failure names the offset.
type reader struct {
	b   []byte
	off int
}

func (r *reader) truncated(what string, need int) error {
	return invalid("truncated: %s: need %s at offset %d, have %d", what, count(need, "byte"), r.off, len(r.b)-r.off)
}

// count formats n and a noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (r *reader) byte(what string) (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.truncated(what, 1)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n > len(r.b)-r.off {
		return nil, r.truncated(what, n)
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

// compactU16 reads Solana's shortvec length: 1 to 3 bytes of 7 bits each,
// least significant first, high bit set on all but the last. Only the
// shortest encoding of a value in 0..65535 is accepted, as Solana does.
func (r *reader) compactU16(what string) (int, error) {
	start := r.off
	v := 0
	for i := range 3 {
		c, err := r.byte(what)
		if err != nil {
			return 0, err
		}
		if c == 0 && i > 0 {
			return 0, invalid("%s at offset %d: non-canonical compact-u16 (trailing zero byte)", what, start)
		}
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if v > 0xffff {
				return 0, invalid("%s at offset %d: compact-u16 overflows 16 bits", what, start)
			}
			return v, nil
		}
	}
	return 0, invalid("%s at offset %d: compact-u16 longer than 3 bytes", what, start)
}

// decode parses and checks a serialized message. It applies the checks of
// Solana's Message::sanitize (legacy and v0) and refuses what the network
// would refuse anyway: duplicate account keys, a lookup table account used
// twice, trailing bytes and versions other than legacy and v0.
func decode(b []byte) (*message, error) {
	if len(b) == 0 {
		return nil, invalid("empty")
	}
	if len(b) > MaxTransactionSize {
		return nil, invalid("message is %d bytes, over Solana's %d-byte transaction limit", len(b), MaxTransactionSize)
	}
	r := &reader{b: b}
	m := &message{Version: versionLegacy}
	if b[0]&versionPrefix != 0 {
		if v := b[0] &^ versionPrefix; v != 0 {
			return nil, invalid("unsupported message version %d (want legacy or v0)", v)
		}
		m.Version = version0
		r.off++
	}
	var err error
	if m.NumRequiredSignatures, err = r.byte("header"); err != nil {
		return nil, err
	}
	if m.NumReadonlySigned, err = r.byte("header"); err != nil {
		return nil, err
	}
	if m.NumReadonlyUnsigned, err = r.byte("header"); err != nil {
		return nil, err
	}
	n, err := r.compactU16("account key count")
	if err != nil {
		return nil, err
	}
	if n > (len(b)-r.off)/keySize {
		return nil, r.truncated(count(n, "account key"), n*keySize)
	}
	m.Keys = make([][]byte, n)
	seen := make(map[string]int, n)
	for i := range n {
		k, _ := r.bytes(keySize, "account key")
		if j, dup := seen[string(k)]; dup {
			return nil, invalid("account key %d duplicates account key %d (%s)", i, j, encode58(k))
		}
		seen[string(k)] = i
		m.Keys[i] = k
	}
	if err := m.checkHeader(); err != nil {
		return nil, err
	}
	if m.RecentBlockhash, err = r.bytes(keySize, "recent blockhash"); err != nil {
		return nil, err
	}
	if m.Instructions, err = readInstructions(r); err != nil {
		return nil, err
	}
	if m.Version == version0 {
		if err := m.readLookups(r); err != nil {
			return nil, err
		}
	}
	if r.off != len(b) {
		return nil, invalid("trailing data after the message: %s at offset %d", count(len(b)-r.off, "byte"), r.off)
	}
	if err := m.checkInstructions(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkHeader checks the header counts against the static account keys.
func (m *message) checkHeader() error {
	switch {
	case m.NumRequiredSignatures == 0:
		return invalid("header: no required signatures (the fee payer must sign)")
	case m.NumReadonlySigned >= m.NumRequiredSignatures:
		return invalid("header: %s of %s leaves no writable fee payer",
			count(int(m.NumReadonlySigned), "read-only signer"), count(int(m.NumRequiredSignatures), "required signature"))
	case int(m.NumRequiredSignatures)+int(m.NumReadonlyUnsigned) > len(m.Keys):
		return invalid("header: %s + %s exceed the %s",
			count(int(m.NumRequiredSignatures), "required signature"), count(int(m.NumReadonlyUnsigned), "read-only unsigned account"),
			count(len(m.Keys), "account key"))
	}
	return nil
}

func readInstructions(r *reader) ([]instruction, error) {
	n, err := r.compactU16("instruction count")
	if err != nil {
		return nil, err
	}
	// Each instruction takes at least 3 bytes; this bounds the allocation.
	if n > (len(r.b)-r.off)/3 {
		return nil, r.truncated(count(n, "instruction"), 3*n)
	}
	ins := make([]instruction, n)
	for i := range ins {
		what := fmt.Sprintf("instruction %d", i)
		if ins[i].ProgramIndex, err = r.byte(what + " program index"); err != nil {
			return nil, err
		}
		na, err := r.compactU16(what + " account count")
		if err != nil {
			return nil, err
		}
		if ins[i].Accounts, err = r.bytes(na, what+" accounts"); err != nil {
			return nil, err
		}
		nd, err := r.compactU16(what + " data length")
		if err != nil {
			return nil, err
		}
		if ins[i].Data, err = r.bytes(nd, what+" data"); err != nil {
			return nil, err
		}
	}
	return ins, nil
}

// readLookups reads the address table lookups of a v0 message and sizes the
// account index space.
func (m *message) readLookups(r *reader) error {
	n, err := r.compactU16("address table lookup count")
	if err != nil {
		return err
	}
	// Each lookup takes at least 34 bytes.
	if n > (len(r.b)-r.off)/(keySize+2) {
		return r.truncated(count(n, "address table lookup"), (keySize+2)*n)
	}
	m.AddressTableLookups = make([]lookup, n)
	type slot struct {
		table string
		index byte
	}
	used := make(map[slot]bool)
	for i := range m.AddressTableLookups {
		l := &m.AddressTableLookups[i]
		what := fmt.Sprintf("address table lookup %d", i)
		if l.Table, err = r.bytes(keySize, what+" table"); err != nil {
			return err
		}
		nw, err := r.compactU16(what + " writable index count")
		if err != nil {
			return err
		}
		if l.Writable, err = r.bytes(nw, what+" writable indexes"); err != nil {
			return err
		}
		nr, err := r.compactU16(what + " read-only index count")
		if err != nil {
			return err
		}
		if l.Readonly, err = r.bytes(nr, what+" read-only indexes"); err != nil {
			return err
		}
		if nw+nr == 0 {
			return invalid("%s: loads no accounts", what)
		}
		for _, idx := range append(append([]byte(nil), l.Writable...), l.Readonly...) {
			s := slot{string(l.Table), idx}
			if used[s] {
				return invalid("%s: table %s index %d is loaded twice", what, encode58(l.Table), idx)
			}
			used[s] = true
		}
		m.numLookupWritable += nw
		m.numLookupReadonly += nr
		if m.numAccounts() > maxAccounts {
			return invalid("%s: more than %d accounts in total", what, maxAccounts)
		}
	}
	return nil
}

// checkInstructions checks every instruction's indexes against the account
// index space. Program ids must be static keys other than the fee payer
// (Solana refuses programs loaded from lookup tables).
func (m *message) checkInstructions() error {
	total := m.numAccounts()
	for i, in := range m.Instructions {
		switch {
		case int(in.ProgramIndex) >= len(m.Keys):
			return invalid("instruction %d: program index %d out of range (%d static account keys)",
				i, in.ProgramIndex, len(m.Keys))
		case in.ProgramIndex == 0:
			return invalid("instruction %d: program index 0 is the fee payer", i)
		}
		for _, a := range in.Accounts {
			if int(a) >= total {
				return invalid("instruction %d: account index %d out of range (%d accounts)", i, a, total)
			}
		}
	}
	return nil
}

// account names account index i: the base58 key for a static key, and
// "lookup:<table>#<index>" for one loaded from an address lookup table,
// whose address is on chain and cannot be known here.
func (m *message) account(i int) string {
	if i < len(m.Keys) {
		return encode58(m.Keys[i])
	}
	i -= len(m.Keys)
	for _, pass := range []bool{true, false} {
		for _, l := range m.AddressTableLookups {
			idx := l.Readonly
			if pass {
				idx = l.Writable
			}
			if i < len(idx) {
				return fmt.Sprintf("lookup:%s#%d", encode58(l.Table), idx[i])
			}
			i -= len(idx)
		}
	}
	return fmt.Sprintf("invalid:%d", i) // unreachable after checkInstructions
}
