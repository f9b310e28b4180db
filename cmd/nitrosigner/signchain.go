package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mr-tron/base58"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// The chain payload kinds of "sign KIND"; sign dispatches them to signChain.
var chainKinds = map[string]bool{
	"eth-tx":         true,
	"eth-message":    true,
	"eth-typed-data": true,
	"psbt":           true,
	"solana":         true,
	"btc-sighash":    true,
}

const (
	ethTxSynopsis      = "nitrosigner [global flags] sign eth-tx --key ID --file PATH"
	ethMessageSynopsis = "nitrosigner [global flags] sign eth-message --key ID --file PATH [--hex]"
	ethTypedSynopsis   = "nitrosigner [global flags] sign eth-typed-data --key ID --file PATH"
	psbtSynopsis       = "nitrosigner [global flags] sign psbt --key ID --file PATH [--network mainnet|testnet|regtest]"
	solanaSynopsis     = "nitrosigner [global flags] sign solana --key ID --file PATH [--encoding raw|base64|hex]"
	btcSighashSynopsis = "nitrosigner [global flags] sign btc-sighash --key ID --sighash HEX --scheme ecdsa|schnorr [--sighash-type N] [--taproot-tweak [--merkle-root HEX]]"
)

const (
	ethTxHelp = `Sign an Ethereum transaction (secp256k1 key). The file holds either the
unsigned transaction in hex (0x optional): legacy RLP [nonce, gasPrice, gas,
to, value, data, chainId, 0, 0], or 0x01/0x02 || rlp(...) for EIP-2930 and
EIP-1559; or a JSON object of its fields, named as in the API:
  {"type": 2, "chain_id": "1", "nonce": "0", "max_priority_fee_per_gas": "1000000000",
   "max_fee_per_gas": "30000000000", "gas": "21000", "to": "0x...", "value": "1",
   "data": "0x", "access_list": [{"address": "0x...", "storage_keys": ["0x..."]}]}
Quantities are decimal or 0x-hex strings. Unknown fields are refused.
The answer is the signed raw transaction (signed_tx), its hash, v, r and s.`

	ethMessageHelp = `Sign an EIP-191 personal message (personal_sign, secp256k1 key). The file
holds the message bytes as they are, or hex with --hex. The enclave signs
keccak256("\x19Ethereum Signed Message:\n" || len || message); the answer is
the 65-byte signature r || s || v with v = 27 or 28.`

	ethTypedHelp = `Sign EIP-712 typed data (eth_signTypedData_v4, secp256k1 key). The file
holds the typed data JSON ({"types", "primaryType", "domain", "message"}),
sent as is and hashed inside the enclave. The answer is the 65-byte
signature r || s || v with v = 27 or 28.`

	psbtHelp = `Sign a PSBT (BIP-174 version 0, secp256k1 key): the inputs that belong to
the key (P2WPKH, P2TR key path) are signed and the updated PSBT is printed in
base64. The file holds the PSBT in binary, base64 or hex (told apart by their
first bytes). --network is checked against the PSBT's addresses and
derivation paths (signet uses testnet).`

	solanaHelp = `Sign a Solana message (legacy or v0, ed25519 key). The file holds the
serialized message (what the signatures cover, not a transaction), raw or,
with --encoding, in base64 or hex. The key must be a required signer. The
answer is the signature (hex and base58, the transaction id when the key is
the fee payer) and the transaction in base64 (for sendTransaction), with the
other signers' slots zero.`

	btcSighashHelp = `Sign a precomputed Bitcoin sighash (secp256k1 key). --scheme ecdsa answers
DER (low-S) || the sighash type byte (default type 1, SIGHASH_ALL); --scheme
schnorr answers a 64-byte BIP-340 signature, plus the type byte when the
type is not 0 (SIGHASH_DEFAULT, the default). --taproot-tweak signs with the
BIP-341 tweaked key (key path), with --merkle-root for an output that also
has a script tree.`
)

// chainStdin is what --file - and --message-file - read.
var chainStdin io.Reader = os.Stdin

// maxPayloadFile bounds what --file reads: gRPC's default message limit.
const maxPayloadFile = 4 << 20

// psbtMagic starts every serialized PSBT; "cHNidP8" is its base64 form.
const psbtMagic = "psbt\xff"

// signChain runs "sign KIND ..." for a chain payload kind.
func (c *cli) signChain(ctx context.Context, kind string, args []string) error {
	switch kind {
	case "eth-tx":
		return c.signEthTx(ctx, args)
	case "eth-message":
		return c.signEthMessage(ctx, args)
	case "eth-typed-data":
		return c.signEthTypedData(ctx, args)
	case "psbt":
		return c.signPSBT(ctx, args)
	case "solana":
		return c.signSolana(ctx, args)
	case "btc-sighash":
		return c.signBTCSighash(ctx, args)
	default:
		return usagef(signSynopsis, "sign: unknown payload kind %q", kind)
	}
}

// payloadFlags are the flags every file-based chain command has.
type payloadFlags struct {
	fs       *flag.FlagSet
	synopsis string
	keyID    *string
	file     *string
}

func newPayloadFlags(kind, synopsis string) *payloadFlags {
	fs := newFlagSet("sign " + kind)
	return &payloadFlags{
		fs:       fs,
		synopsis: synopsis,
		keyID:    fs.String("key", "", "`id` of the key to sign with (required)"),
		file:     fs.String("file", "", "`path` of the payload file, - for standard input (required)"),
	}
}

// parse parses args, checks --key and --file and returns the file's
// contents, which are never empty.
func (p *payloadFlags) parse(c *cli, args []string, help string) ([]byte, error) {
	if err := parseFlags(p.fs, args, c.stdout, p.synopsis, help); err != nil {
		return nil, err
	}
	if err := noArgs(p.fs, p.synopsis); err != nil {
		return nil, err
	}
	if *p.keyID == "" {
		return nil, usagef(p.synopsis, "--key is required")
	}
	return readPayloadFile(p.synopsis, "file", *p.file, maxPayloadFile)
}

// readPayloadFile reads path, or standard input for "-". Problems are usage
// errors: they are found before the server is contacted.
func readPayloadFile(synopsis, flag, path string, limit int) ([]byte, error) {
	var r io.Reader
	name := path
	switch path {
	case "":
		return nil, usagef(synopsis, "--%s is required (- reads standard input)", flag)
	case "-":
		r, name = chainStdin, "standard input"
	default:
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef(synopsis, "--%s: %v", flag, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		return nil, usagef(synopsis, "--%s: %v", flag, err) // it names the file
	case err != nil:
		return nil, usagef(synopsis, "--%s: read %s: %v", flag, name, err)
	case len(b) > limit:
		return nil, usagef(synopsis, "--%s: %s is larger than %d bytes, the limit for this payload", flag, name, limit)
	case len(b) == 0:
		return nil, usagef(synopsis, "--%s: %s is empty", flag, name)
	}
	return b, nil
}

// decodeHexText decodes file contents holding hex: surrounding whitespace
// and a 0x prefix are allowed.
func decodeHexText(content []byte) ([]byte, error) {
	s := strings.TrimSpace(string(content))
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if s == "" {
		return nil, errors.New("no hex digits")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not valid hex: %s", strings.TrimPrefix(err.Error(), "encoding/hex: "))
	}
	return b, nil
}

// decodeBase64Text decodes standard base64, ignoring whitespace (line
// breaks included).
func decodeBase64Text(content []byte) ([]byte, error) {
	s := strings.Join(strings.Fields(string(content)), "")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %v", err)
	}
	return b, nil
}

func (c *cli) signEthTx(ctx context.Context, args []string) error {
	p := newPayloadFlags("eth-tx", ethTxSynopsis)
	content, err := p.parse(c, args, ethTxHelp)
	if err != nil {
		return err
	}
	tx, err := parseEthTx(content)
	if err != nil {
		return usagef(ethTxSynopsis, "--file: %v", err)
	}
	req := &signerv1.SignRequest{KeyId: *p.keyID, Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: tx}}
	return c.signAndPrint(ctx, req, func(r *signerv1.SignResponse) object {
		sig := r.GetEthSignature()
		return object{
			{"key_id", r.GetKeyId()},
			{"signed_tx", hex0x(r.GetSignedPayload())},
			{"tx_hash", hex0x(r.GetTxHash())},
			{"v", json.Number(strconv.FormatUint(sig.GetV(), 10))},
			{"r", hex0x(sig.GetR())},
			{"s", hex0x(sig.GetS())},
			{"summary", summaryJSON(r, hex0x)},
		}
	})
}

// parseEthTx reads a transaction file: a JSON object of EthTxFields, or the
// unsigned encoding in hex.
func parseEthTx(content []byte) (*signerv1.EthTransaction, error) {
	trimmed := bytes.TrimSpace(content)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var fields signerv1.EthTxFields
		if err := protojson.Unmarshal(trimmed, &fields); err != nil {
			return nil, fmt.Errorf("transaction JSON: %s", protoErrorText(err))
		}
		return &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: &fields}}, nil
	}
	raw, err := decodeHexText(content)
	if err != nil {
		return nil, fmt.Errorf("want the unsigned transaction in hex or a JSON object of its fields: %v", err)
	}
	return &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: raw}}, nil
}

// protoErrorText is a protojson error without its "proto:" prefix, which
// the library writes with a space or a non-breaking space at random.
func protoErrorText(err error) string {
	return strings.TrimLeftFunc(strings.TrimPrefix(err.Error(), "proto:"), unicode.IsSpace)
}

func (c *cli) signEthMessage(ctx context.Context, args []string) error {
	p := newPayloadFlags("eth-message", ethMessageSynopsis)
	isHex := p.fs.Bool("hex", false, "the file holds the message in hex")
	content, err := p.parse(c, args, ethMessageHelp)
	if err != nil {
		return err
	}
	msg := content
	if *isHex {
		if msg, err = decodeHexText(content); err != nil {
			return usagef(ethMessageSynopsis, "--file: %v", err)
		}
	}
	req := &signerv1.SignRequest{KeyId: *p.keyID, Payload: &signerv1.SignRequest_EthPersonalMessage{EthPersonalMessage: msg}}
	return c.signAndPrint(ctx, req, ethSignatureResult)
}

func (c *cli) signEthTypedData(ctx context.Context, args []string) error {
	p := newPayloadFlags("eth-typed-data", ethTypedSynopsis)
	content, err := p.parse(c, args, ethTypedHelp)
	if err != nil {
		return err
	}
	switch {
	case !utf8.Valid(content):
		return usagef(ethTypedSynopsis, "--file: typed data is not UTF-8 text")
	case !json.Valid(content):
		return usagef(ethTypedSynopsis, "--file: typed data is not valid JSON")
	}
	req := &signerv1.SignRequest{KeyId: *p.keyID, Payload: &signerv1.SignRequest_EthTypedDataJson{EthTypedDataJson: string(content)}}
	return c.signAndPrint(ctx, req, ethSignatureResult)
}

// ethSignatureResult is the answer to eth-message and eth-typed-data.
func ethSignatureResult(r *signerv1.SignResponse) object {
	return object{
		{"key_id", r.GetKeyId()},
		{"signature", hex0x(r.GetSignature())},
		{"summary", summaryJSON(r, hex0x)},
	}
}

func (c *cli) signPSBT(ctx context.Context, args []string) error {
	p := newPayloadFlags("psbt", psbtSynopsis)
	network := p.fs.String("network", "mainnet", "bitcoin `network`: mainnet, testnet (also signet) or regtest")
	content, err := p.parse(c, args, psbtHelp)
	if err != nil {
		return err
	}
	net, err := parseNetwork(*network)
	if err != nil {
		return usagef(psbtSynopsis, "--network: %v", err)
	}
	psbt, err := parsePSBT(content)
	if err != nil {
		return usagef(psbtSynopsis, "--file: %v", err)
	}
	req := &signerv1.SignRequest{KeyId: *p.keyID, Payload: &signerv1.SignRequest_BitcoinPsbt{
		BitcoinPsbt: &signerv1.BitcoinPsbt{Psbt: psbt, Network: net},
	}}
	return c.signAndPrint(ctx, req, func(r *signerv1.SignResponse) object {
		return object{
			{"key_id", r.GetKeyId()},
			{"psbt", base64.StdEncoding.EncodeToString(r.GetSignedPayload())},
			{"summary", summaryJSON(r, hex.EncodeToString)},
		}
	})
}

func parseNetwork(name string) (signerv1.BitcoinNetwork, error) {
	switch strings.ToLower(name) {
	case "mainnet":
		return signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET, nil
	case "testnet", "signet":
		return signerv1.BitcoinNetwork_BITCOIN_NETWORK_TESTNET, nil
	case "regtest":
		return signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST, nil
	default:
		return 0, fmt.Errorf("unknown network %q (want mainnet, testnet or regtest)", name)
	}
}

// parsePSBT accepts a PSBT in binary, base64 or hex, told apart by the
// magic bytes "psbt\xff" in each form.
func parsePSBT(content []byte) ([]byte, error) {
	if bytes.HasPrefix(content, []byte(psbtMagic)) {
		return content, nil
	}
	trimmed := bytes.TrimSpace(content)
	switch {
	case bytes.HasPrefix(trimmed, []byte("cHNidP8")):
		return decodeBase64Text(trimmed)
	case bytes.HasPrefix(bytes.ToLower(trimmed), []byte(hex.EncodeToString([]byte(psbtMagic)))):
		return decodeHexText(trimmed)
	default:
		return nil, errors.New(`not a PSBT: want binary (starting with "psbt\xff"), base64 ("cHNidP8...") or hex ("70736274ff...")`)
	}
}

func (c *cli) signSolana(ctx context.Context, args []string) error {
	p := newPayloadFlags("solana", solanaSynopsis)
	encoding := p.fs.String("encoding", "raw", "how the file holds the message: raw, base64 or hex")
	content, err := p.parse(c, args, solanaHelp)
	if err != nil {
		return err
	}
	var msg []byte
	switch strings.ToLower(*encoding) {
	case "raw":
		msg = content
	case "base64":
		msg, err = decodeBase64Text(content)
	case "hex":
		msg, err = decodeHexText(content)
	default:
		return usagef(solanaSynopsis, "--encoding: unknown encoding %q (want raw, base64 or hex)", *encoding)
	}
	if err != nil {
		return usagef(solanaSynopsis, "--file: %v", err)
	}
	req := &signerv1.SignRequest{KeyId: *p.keyID, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: msg}}
	return c.signAndPrint(ctx, req, func(r *signerv1.SignResponse) object {
		return object{
			{"key_id", r.GetKeyId()},
			{"signature", hex.EncodeToString(r.GetSignature())},
			{"signature_base58", base58.Encode(r.GetSignature())},
			{"signed_tx", base64.StdEncoding.EncodeToString(r.GetSignedPayload())},
			{"summary", summaryJSON(r, hex.EncodeToString)},
		}
	})
}

func (c *cli) signBTCSighash(ctx context.Context, args []string) error {
	const syn = btcSighashSynopsis
	fs := newFlagSet("sign btc-sighash")
	keyID := fs.String("key", "", "`id` of the key to sign with (required)")
	sighashHex := fs.String("sighash", "", "the 32-byte sighash in `hex` (required)")
	scheme := fs.String("scheme", "", "signature `scheme`: ecdsa or schnorr (required)")
	sighashType := fs.Uint("sighash-type", 0, "sighash type byte `N` (default: 1 for ecdsa, 0 for schnorr)")
	tweak := fs.Bool("taproot-tweak", false, "schnorr: sign with the BIP-341 tweaked key (taproot key path)")
	merkleHex := fs.String("merkle-root", "", "with --taproot-tweak: the 32-byte script tree merkle root in `hex`")
	if err := parseFlags(fs, args, c.stdout, syn, btcSighashHelp); err != nil {
		return err
	}
	if err := noArgs(fs, syn); err != nil {
		return err
	}
	set := setFlags(fs)
	if *keyID == "" {
		return usagef(syn, "--key is required")
	}
	if !set["sighash"] {
		return usagef(syn, "--sighash is required")
	}
	sighash, err := parseHex(syn, "sighash", *sighashHex)
	if err != nil {
		return err
	}
	if len(sighash) != 32 {
		return usagef(syn, "--sighash is %d bytes, want 32", len(sighash))
	}
	bs := &signerv1.BitcoinSighash{Sighash: sighash, TaprootTweak: *tweak}
	switch strings.ToLower(*scheme) {
	case "ecdsa":
		bs.Scheme, bs.SighashType = signerv1.BitcoinSighash_SCHEME_ECDSA, 1
		if *tweak || set["merkle-root"] {
			return usagef(syn, "--taproot-tweak and --merkle-root apply to --scheme schnorr only")
		}
	case "schnorr":
		bs.Scheme = signerv1.BitcoinSighash_SCHEME_SCHNORR
	case "":
		return usagef(syn, "--scheme is required (ecdsa or schnorr)")
	default:
		return usagef(syn, "--scheme: unknown scheme %q (want ecdsa or schnorr)", *scheme)
	}
	if set["sighash-type"] {
		if *sighashType > 0xff {
			return usagef(syn, "--sighash-type %d does not fit in a byte", *sighashType)
		}
		bs.SighashType = uint32(*sighashType)
	}
	if set["merkle-root"] {
		if !*tweak {
			return usagef(syn, "--merkle-root needs --taproot-tweak")
		}
		if bs.TaprootMerkleRoot, err = parseHex(syn, "merkle-root", *merkleHex); err != nil {
			return err
		}
		if len(bs.TaprootMerkleRoot) != 32 {
			return usagef(syn, "--merkle-root is %d bytes, want 32", len(bs.TaprootMerkleRoot))
		}
	}
	req := &signerv1.SignRequest{KeyId: *keyID, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: bs}}
	return c.signAndPrint(ctx, req, func(r *signerv1.SignResponse) object {
		return object{
			{"key_id", r.GetKeyId()},
			{"signature", hex.EncodeToString(r.GetSignature())},
			{"summary", summaryJSON(r, hex.EncodeToString)},
		}
	})
}

// signAndPrint sends req and prints what result makes of the answer: as
// one JSON object with --json, or as aligned lines with nested names
// flattened ("summary.transfers[0].lamports").
func (c *cli) signAndPrint(ctx context.Context, req *signerv1.SignRequest, result func(*signerv1.SignResponse) object) error {
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		resp, err := client.Sign(ctx, req)
		if err != nil {
			return err
		}
		out := result(resp)
		if c.cfg.json {
			return c.writeJSON(out)
		}
		var pairs []string
		flattenFields("", out, &pairs)
		return c.fields(pairs...)
	})
}

func hex0x(b []byte) string { return "0x" + hex.EncodeToString(b) }

// object is a JSON object that keeps its members in order.
type object []member

type member struct {
	name  string
	value any
}

// MarshalJSON implements json.Marshaler.
func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(m.name); err != nil {
			return nil, err
		}
		buf.WriteByte(':')
		if err := enc.Encode(m.value); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// summaryJSON converts the chain summary of r (the message inside the
// PayloadSummary oneof) to JSON: field names as in the .proto, fields with
// zero values left out, bytes through hexBytes, 64-bit integers exact, enums
// as short lowercase names. It is nil when r has no summary.
func summaryJSON(r *signerv1.SignResponse, hexBytes func([]byte) string) any {
	s := r.GetSummary().ProtoReflect()
	od := s.Descriptor().Oneofs().ByName("chain")
	if od == nil {
		return nil
	}
	fd := s.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return messageJSON(s.Get(fd).Message(), hexBytes)
}

func messageJSON(m protoreflect.Message, hexBytes func([]byte) string) object {
	out := object{}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		var val any
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, l.Len())
			for j := range items {
				items[j] = valueJSON(fd, l.Get(j), hexBytes)
			}
			val = items
		case fd.IsMap():
			entries := object{}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				entries = append(entries, member{k.String(), valueJSON(fd.MapValue(), mv, hexBytes)})
				return true
			})
			val = entries
		default:
			val = valueJSON(fd, v, hexBytes)
		}
		out = append(out, member{string(fd.Name()), val})
	}
	return out
}

func valueJSON(fd protoreflect.FieldDescriptor, v protoreflect.Value, hexBytes func([]byte) string) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageJSON(v.Message(), hexBytes)
	case protoreflect.BytesKind:
		return hexBytes(v.Bytes())
	case protoreflect.EnumKind:
		return enumJSON(fd.Enum(), v.Enum())
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float()
	default: // signed integers
		return json.Number(strconv.FormatInt(v.Int(), 10))
	}
}

// enumJSON names an enum value without its type prefix, in lowercase
// (BITCOIN_NETWORK_MAINNET is "mainnet"); a value this build does not know
// is its number.
func enumJSON(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) any {
	ev := ed.Values().ByNumber(n)
	if ev == nil {
		return json.Number(strconv.Itoa(int(n)))
	}
	var prefix strings.Builder
	for i, r := range string(ed.Name()) {
		if i > 0 && unicode.IsUpper(r) {
			prefix.WriteByte('_')
		}
		prefix.WriteRune(unicode.ToUpper(r))
	}
	prefix.WriteByte('_')
	return strings.ToLower(strings.TrimPrefix(string(ev.Name()), prefix.String()))
}

// flattenFields appends "name", "value" pairs for every leaf of v, naming
// nested members "a.b" and list items "a[0]". Strings are made printable.
func flattenFields(name string, v any, pairs *[]string) {
	switch v := v.(type) {
	case object:
		for _, m := range v {
			n := m.name
			if name != "" {
				n = name + "." + m.name
			}
			flattenFields(n, m.value, pairs)
		}
	case []any:
		for i, item := range v {
			flattenFields(fmt.Sprintf("%s[%d]", name, i), item, pairs)
		}
	case string:
		*pairs = append(*pairs, name, printable(v))
	case nil:
	default:
		*pairs = append(*pairs, name, fmt.Sprint(v))
	}
}
