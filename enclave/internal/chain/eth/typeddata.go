package eth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// maxTypes bounds the number of struct types in typed data.
const maxTypes = 256

// domainType is the name of the EIP-712 domain struct.
const domainType = "EIP712Domain"

// domainFields are the fields EIP-712 defines for EIP712Domain, with their
// types. Other fields are refused: signers disagree on how to treat them.
var domainFields = map[string]string{
	"name":              "string",
	"version":           "string",
	"chainId":           "uint256",
	"verifyingContract": "address",
	"salt":              "bytes32",
}

type kind uint8

const (
	kindStruct kind = iota
	kindAddress
	kindBool
	kindString
	kindBytes
	kindFixedBytes
	kindInt
	kindUint
)

// fieldType is a parsed member type such as "uint256", "Person" or
// "bytes32[2][]".
type fieldType struct {
	text   string // as written; encodeType uses it verbatim
	kind   kind
	size   int    // bytesN: N; intN/uintN: N bits
	strukt string // kindStruct: the struct name
	dims   []int  // array dimensions, outermost first; -1 is dynamic
}

type member struct {
	name string
	typ  fieldType
}

// typedData holds validated struct types and memoized type hashes.
type typedData struct {
	structs    map[string][]member
	typeHashes map[string][]byte
}

// hashTypedData parses eth_signTypedData_v4 JSON and returns the EIP-712
// digest keccak256(0x19 0x01 || domainSeparator || hashStruct(message)) and
// the summary fields it describes. Errors are plain; the caller names the
// request field.
func hashTypedData(s string) ([]byte, *signerv1.EthSummary, error) {
	if len(s) > MaxTypedDataSize {
		return nil, nil, fmt.Errorf("is %d bytes, limit %d", len(s), MaxTypedDataSize)
	}
	if !utf8.ValidString(s) {
		return nil, nil, errors.New("is not valid UTF-8")
	}
	v, err := decodeJSON(s)
	if err != nil {
		return nil, nil, err
	}
	root, ok := v.(jsonObject)
	if !ok {
		return nil, nil, fmt.Errorf("expected a JSON object with types, primaryType, domain and message, got %s", jsonKind(v))
	}
	for _, k := range sortedKeys(root) {
		switch k {
		case "types", "primaryType", "domain", "message":
		default:
			return nil, nil, fmt.Errorf("unknown top-level key %s (want types, primaryType, domain, message)", quote(k))
		}
	}
	for _, k := range []string{"types", "primaryType", "domain", "message"} {
		if _, ok := root[k]; !ok {
			return nil, nil, fmt.Errorf("%s: missing", k)
		}
	}
	td, err := parseTypes(root["types"])
	if err != nil {
		return nil, nil, err
	}
	primary, ok := root["primaryType"].(string)
	switch {
	case !ok:
		return nil, nil, fmt.Errorf("primaryType: expected a string, got %s", jsonKind(root["primaryType"]))
	case primary == domainType:
		return nil, nil, errors.New("primaryType: EIP712Domain cannot be the primary type (wallets disagree on how to hash it)")
	case td.structs[primary] == nil:
		return nil, nil, fmt.Errorf("primaryType: %s is not defined in types", quote(primary))
	}
	domainSep, err := td.hashStruct(domainType, root["domain"], "domain")
	if err != nil {
		return nil, nil, err
	}
	msgHash, err := td.hashStruct(primary, root["message"], "message")
	if err != nil {
		return nil, nil, err
	}
	sum := &signerv1.EthSummary{Kind: "typed_data", PrimaryType: primary}
	domain := root["domain"].(jsonObject) // hashStruct checked it
	sum.DomainName, _ = domain["name"].(string)
	sum.DomainVersion, _ = domain["version"].(string)
	if c, ok := domain["chainId"]; ok {
		id, _ := parseTypedInt(c)
		sum.ChainId = id.String()
	}
	if a, ok := domain["verifyingContract"].(string); ok {
		addr, _ := parseAddress(a)
		sum.VerifyingContract = checksumAddress(addr)
	}
	return keccak256([]byte{0x19, 0x01}, domainSep, msgHash), sum, nil
}

// SignTypedData hashes eth_signTypedData_v4 JSON (EIP-712) and signs the
// digest. Signature is r || s || v with v = 27 + recovery id; Summary has
// kind "typed_data", the domain's name, version, chain id and verifying
// contract, the primary type and the digest.
//
// Typed data is checked strictly: the JSON must have exactly the keys types,
// primaryType, domain and message, no duplicate keys, and at most
// [MaxTypedDataSize] bytes. Types must be well formed and defined;
// EIP712Domain must be declared with standard domain fields only; a type
// cycle that no finite value could satisfy is refused (recursion through a
// dynamic array T[] is allowed, as in EIP-712 and go-ethereum). Values must
// match their types exactly: every field present and no others, fixed-size
// arrays of the declared length, integers within the range of intN/uintN,
// bytesN of exactly N bytes, addresses 0x-prefixed (a mixed-case address
// must have a valid EIP-55 checksum). Integers are JSON integers that a
// double represents exactly, or decimal or 0x-hex strings (an optional
// leading "-" for intN). Errors for bad input wrap [sign.ErrInvalidPayload]
// and start with "eth_typed_data_json: ".
func SignTypedData(ds sign.DigestSigner, priv, pub []byte, typedDataJSON string) (*signerv1.SignResponse, error) {
	digest, sum, err := hashTypedData(typedDataJSON)
	if err != nil {
		return nil, invalid("eth_typed_data_json", "%v", err)
	}
	return signEIP191(ds, priv, pub, digest, sum)
}

// parseTypes validates the types object: struct and member names are
// identifiers, member names unique per struct, member types defined, the
// domain standard, and no type cycle without a dynamic array on it.
func parseTypes(v any) (*typedData, error) {
	obj, ok := v.(jsonObject)
	if !ok {
		return nil, fmt.Errorf("types: expected an object, got %s", jsonKind(v))
	}
	if len(obj) > maxTypes {
		return nil, fmt.Errorf("types: %d types, limit %d", len(obj), maxTypes)
	}
	names := sortedKeys(obj)
	raw := make(map[string][][2]string, len(obj))
	for _, name := range names {
		path := "types." + name
		if !isIdentifier(name) {
			return nil, fmt.Errorf("types: type name %s is not an identifier", quote(name))
		}
		if strings.Contains(name, "$") {
			// Wallets find a type's dependencies with /\w+/ and leave such
			// a struct out of encodeType: its digest would differ.
			return nil, fmt.Errorf("types: type name %s must not contain \"$\"", quote(name))
		}
		if _, _, atomic, _ := parseAtomic(name); atomic {
			return nil, fmt.Errorf("types: %s is an atomic type and cannot name a struct", quote(name))
		}
		arr, ok := obj[name].([]any)
		if !ok {
			return nil, fmt.Errorf("%s: expected an array of {name, type}, got %s", path, jsonKind(obj[name]))
		}
		seen := make(map[string]bool, len(arr))
		for i, m := range arr {
			mobj, ok := m.(jsonObject)
			if !ok {
				return nil, fmt.Errorf("%s[%d]: expected an object {name, type}, got %s", path, i, jsonKind(m))
			}
			for _, k := range sortedKeys(mobj) {
				if k != "name" && k != "type" {
					return nil, fmt.Errorf("%s[%d]: unknown key %s (want name, type)", path, i, quote(k))
				}
			}
			mname, ok1 := mobj["name"].(string)
			mtype, ok2 := mobj["type"].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%s[%d]: name and type must both be strings", path, i)
			}
			if !isIdentifier(mname) {
				return nil, fmt.Errorf("%s[%d]: member name %s is not an identifier", path, i, quote(mname))
			}
			if seen[mname] {
				return nil, fmt.Errorf("%s.%s: member declared twice", path, mname)
			}
			seen[mname] = true
			raw[name] = append(raw[name], [2]string{mname, mtype})
		}
	}
	td := &typedData{structs: make(map[string][]member, len(raw)), typeHashes: map[string][]byte{}}
	for _, name := range names {
		ms := make([]member, 0, len(raw[name]))
		for _, m := range raw[name] {
			ft, err := parseFieldType(m[1], obj)
			if err != nil {
				return nil, fmt.Errorf("types.%s.%s: %v", name, m[0], err)
			}
			ms = append(ms, member{name: m[0], typ: ft})
		}
		td.structs[name] = ms
	}
	if err := checkDomainType(td.structs); err != nil {
		return nil, err
	}
	if err := findCycle(td.structs, names); err != nil {
		return nil, err
	}
	return td, nil
}

func checkDomainType(structs map[string][]member) error {
	ms, ok := structs[domainType]
	switch {
	case !ok:
		return errors.New("types.EIP712Domain: missing; the domain separator needs it")
	case len(ms) == 0:
		return errors.New("types.EIP712Domain: declares no fields; a signature without a domain could be replayed by any application")
	}
	for _, m := range ms {
		want, ok := domainFields[m.name]
		if !ok {
			return fmt.Errorf("types.EIP712Domain.%s: not an EIP-712 domain field (name, version, chainId, verifyingContract, salt)", m.name)
		}
		if m.typ.text != want {
			return fmt.Errorf("types.EIP712Domain.%s: must have type %s, got %s", m.name, want, quote(m.typ.text))
		}
	}
	return nil
}

// findCycle refuses struct types that contain themselves through members
// that cannot be empty (a struct, or fixed-size arrays of it): no finite
// value has such a type. A dynamic array breaks the chain, since it may be
// empty.
func findCycle(structs map[string][]member, names []string) error {
	const (
		unseen = iota
		onPath
		done
	)
	state := make(map[string]int, len(structs))
	var path []string
	var visit func(string) error
	visit = func(n string) error {
		state[n] = onPath
		path = append(path, n)
		for _, m := range structs[n] {
			if m.typ.kind != kindStruct || slices.Contains(m.typ.dims, -1) {
				continue
			}
			switch state[m.typ.strukt] {
			case onPath:
				i := slices.Index(path, m.typ.strukt)
				cycle := append(slices.Clone(path[i:]), m.typ.strukt)
				return fmt.Errorf("type cycle: %s (no finite value has this type; recursion needs a dynamic array T[])", strings.Join(cycle, " -> "))
			case unseen:
				if err := visit(m.typ.strukt); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, n := range names {
		if state[n] == unseen {
			if err := visit(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseFieldType parses a member type against the declared struct names.
func parseFieldType(s string, structs jsonObject) (fieldType, error) {
	ft := fieldType{text: s}
	base := s
	for strings.HasSuffix(base, "]") {
		open := strings.LastIndexByte(base, '[')
		if open < 0 {
			return ft, fmt.Errorf("malformed type %s", quote(s))
		}
		n := -1
		if inner := base[open+1 : len(base)-1]; inner != "" {
			v, err := strconv.Atoi(inner)
			if err != nil || len(inner) > 6 || inner[0] < '1' || inner[0] > '9' {
				return ft, fmt.Errorf("type %s: array length %s must be a positive decimal number below 1000000", quote(s), quote(inner))
			}
			n = v
		}
		ft.dims = append(ft.dims, n)
		base = base[:open]
	}
	k, size, atomic, err := parseAtomic(base)
	switch {
	case err != nil:
		return ft, fmt.Errorf("type %s: %v", quote(s), err)
	case atomic:
		ft.kind, ft.size = k, size
	case !isIdentifier(base):
		return ft, fmt.Errorf("malformed type %s", quote(s))
	case structs[base] == nil:
		return ft, fmt.Errorf("unknown type %s", quote(base))
	default:
		ft.kind, ft.strukt = kindStruct, base
	}
	return ft, nil
}

// parseAtomic recognises EIP-712 atomic and dynamic types. It reports
// atomic == false for names that can only be struct names, and an error for
// malformed sizes such as "uint7" or "bytes33".
func parseAtomic(s string) (k kind, size int, atomic bool, err error) {
	switch s {
	case "address":
		return kindAddress, 0, true, nil
	case "bool":
		return kindBool, 0, true, nil
	case "string":
		return kindString, 0, true, nil
	case "bytes":
		return kindBytes, 0, true, nil
	case "int", "uint":
		// Not EIP-712 types. Libraries disagree on them (ethers 6 hashes
		// them as int256/uint256, others keep the bare name), so one
		// document would have two digests.
		return 0, 0, true, fmt.Errorf("is not an EIP-712 type; write %s256", s)
	}
	for _, p := range []struct {
		prefix string
		kind   kind
	}{{"bytes", kindFixedBytes}, {"uint", kindUint}, {"int", kindInt}} {
		digits, ok := strings.CutPrefix(s, p.prefix)
		if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
			continue
		}
		n, _ := strconv.Atoi(digits)
		valid := len(digits) <= 3 && digits[0] != '0'
		if p.kind == kindFixedBytes {
			valid = valid && n >= 1 && n <= 32
		} else {
			valid = valid && n >= 8 && n <= 256 && n%8 == 0
		}
		if !valid {
			return 0, 0, true, fmt.Errorf("invalid size %s (bytesN: 1..32; intN, uintN: 8..256 in steps of 8)", digits)
		}
		return p.kind, n, true, nil
	}
	return 0, 0, false, nil
}

func isIdentifier(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i, c := range []byte(s) {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// typeHash returns keccak256(encodeType(name)): the struct, then every struct
// it references (directly or through arrays) sorted by name.
func (td *typedData) typeHash(name string) []byte {
	if h, ok := td.typeHashes[name]; ok {
		return h
	}
	deps := map[string]bool{name: true}
	queue := []string{name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, m := range td.structs[n] {
			if m.typ.kind == kindStruct && !deps[m.typ.strukt] {
				deps[m.typ.strukt] = true
				queue = append(queue, m.typ.strukt)
			}
		}
	}
	delete(deps, name)
	order := append([]string{name}, sortedKeys(deps)...)
	var enc strings.Builder
	for _, n := range order {
		enc.WriteString(n)
		enc.WriteByte('(')
		for i, m := range td.structs[n] {
			if i > 0 {
				enc.WriteByte(',')
			}
			enc.WriteString(m.typ.text)
			enc.WriteByte(' ')
			enc.WriteString(m.name)
		}
		enc.WriteByte(')')
	}
	h := keccak256([]byte(enc.String()))
	td.typeHashes[name] = h
	return h
}

// hashStruct returns keccak256(typeHash || encodeData(v)). path names v in
// errors ("message.from").
func (td *typedData) hashStruct(name string, v any, path string) ([]byte, error) {
	obj, ok := v.(jsonObject)
	if !ok {
		return nil, fmt.Errorf("%s: expected an object of type %s, got %s", path, name, jsonKind(v))
	}
	ms := td.structs[name]
	for _, k := range sortedKeys(obj) {
		if !slices.ContainsFunc(ms, func(m member) bool { return m.name == k }) {
			return nil, fmt.Errorf("%s: key %s is not a member of type %s", path, quote(k), name)
		}
	}
	buf := make([]byte, 0, 32*(1+len(ms)))
	buf = append(buf, td.typeHash(name)...)
	for _, m := range ms {
		mv, ok := obj[m.name]
		if !ok {
			return nil, fmt.Errorf("%s.%s: missing (member of type %s)", path, m.name, name)
		}
		w, err := td.encodeValue(m.typ, 0, mv, path+"."+m.name)
		if err != nil {
			return nil, err
		}
		buf = append(buf, w...)
	}
	return keccak256(buf), nil
}

// encodeValue returns the 32-byte encoding of v as ft with the first dim
// array dimensions already unwrapped.
func (td *typedData) encodeValue(ft fieldType, dim int, v any, path string) ([]byte, error) {
	if dim < len(ft.dims) {
		arr, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: expected an array (type %s), got %s", path, ft.text, jsonKind(v))
		}
		if n := ft.dims[dim]; n >= 0 && len(arr) != n {
			return nil, fmt.Errorf("%s: fixed-size array (type %s) needs %d elements, got %d", path, ft.text, n, len(arr))
		}
		buf := make([]byte, 0, 32*len(arr))
		for i, e := range arr {
			w, err := td.encodeValue(ft, dim+1, e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			buf = append(buf, w...)
		}
		return keccak256(buf), nil
	}
	if ft.kind == kindStruct {
		return td.hashStruct(ft.strukt, v, path)
	}
	w, err := encodeAtomic(ft, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return w, nil
}

// encodeAtomic encodes a value of an atomic or dynamic type as one word.
func encodeAtomic(ft fieldType, v any) ([]byte, error) {
	base, _, _ := strings.Cut(ft.text, "[")
	if ft.kind == kindBool {
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("expected true or false (bool), got %s", jsonKind(v))
		}
		w := make([]byte, 32)
		if b {
			w[31] = 1
		}
		return w, nil
	}
	if ft.kind == kindInt || ft.kind == kindUint {
		x, err := parseTypedInt(v)
		if err != nil {
			return nil, err
		}
		return encodeInt(x, ft.kind == kindInt, ft.size, base)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("expected a string (%s), got %s", base, jsonKind(v))
	}
	switch ft.kind {
	case kindString:
		return keccak256([]byte(s)), nil
	case kindAddress:
		a, err := parseAddress(s)
		if err != nil {
			return nil, err
		}
		return append(make([]byte, 12, 32), a...), nil
	case kindBytes:
		b, err := parseHexBytes(s, MaxTypedDataSize)
		if err != nil {
			return nil, err
		}
		return keccak256(b), nil
	default: // kindFixedBytes
		b, err := parseHexBytes(s, 32)
		if err == nil && len(b) != ft.size {
			err = fmt.Errorf("%s needs exactly %d bytes, got %d", base, ft.size, len(b))
		}
		if err != nil {
			return nil, err
		}
		w := make([]byte, 32)
		copy(w, b)
		return w, nil
	}
}

// parseTypedInt reads an integer given as a JSON integer literal that a
// double represents exactly (so that every JSON parser reads the same value),
// or as a decimal or 0x-hex string with an optional leading "-".
func parseTypedInt(v any) (*big.Int, error) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		digits := strings.TrimPrefix(s, "-")
		if len(s) > maxQuantityLen || digits == "" || strings.Trim(digits, "0123456789") != "" {
			return nil, fmt.Errorf("JSON number %s is not an integer literal; give exact values as decimal strings", quote(s))
		}
		n, _ := new(big.Int).SetString(s, 10)
		if _, acc := new(big.Float).SetInt(n).Float64(); acc != big.Exact {
			return nil, fmt.Errorf("JSON number %s is not exactly representable as a double and parsers may round it; send it as a decimal string", s)
		}
		return n, nil
	case string:
		digits, neg := strings.CutPrefix(x, "-")
		n, err := parseQuantity(digits, 256)
		if err != nil {
			return nil, fmt.Errorf("integer string: %v", err)
		}
		if neg {
			n.Neg(n)
		}
		return n, nil
	}
	return nil, fmt.Errorf("expected an integer (JSON number or string), got %s", jsonKind(v))
}

// encodeInt checks x against intN/uintN and returns its 256-bit two's
// complement encoding.
func encodeInt(x *big.Int, signed bool, bits int, typ string) ([]byte, error) {
	if !signed {
		if x.Sign() < 0 {
			return nil, fmt.Errorf("%s is negative; %s is unsigned", x, typ)
		}
		if x.BitLen() > bits {
			return nil, fmt.Errorf("%s does not fit in %s", x, typ)
		}
		return x.FillBytes(make([]byte, 32)), nil
	}
	limit := new(big.Int).Lsh(big.NewInt(1), uint(bits-1)) // 2^(bits-1)
	if x.Cmp(limit) >= 0 || x.CmpAbs(limit) > 0 {
		return nil, fmt.Errorf("%s does not fit in %s", x, typ)
	}
	if x.Sign() >= 0 {
		return x.FillBytes(make([]byte, 32)), nil
	}
	twos := new(big.Int).Add(x, new(big.Int).Lsh(big.NewInt(1), 256))
	return twos.FillBytes(make([]byte, 32)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
