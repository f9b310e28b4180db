package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

// The JSON shapes printed with --json: field names as in the .proto, bytes
// as lowercase hex, enums as short lowercase names.

type keyJSON struct {
	KeyID           string            `json:"key_id"`
	Algorithm       string            `json:"algorithm"`
	PublicKey       string            `json:"public_key"`
	State           string            `json:"state"`
	CreatedAtUnixMs int64             `json:"created_at_unix_ms"`
	Labels          map[string]string `json:"labels,omitempty"`
	Addresses       *addressesJSON    `json:"addresses,omitempty"`
	Sealing         *sealingJSON      `json:"sealing,omitempty"`
	// Set by keys create|get --verify, which print only what verified.
	Verified        bool   `json:"verified,omitempty"`
	EnclaveModuleID string `json:"enclave_module_id,omitempty"`
}

// addressesJSON holds the chain addresses that apply to the key.
type addressesJSON struct {
	Ethereum             string `json:"ethereum,omitempty"`
	BitcoinP2WPKH        string `json:"bitcoin_p2wpkh,omitempty"`
	BitcoinP2TR          string `json:"bitcoin_p2tr,omitempty"`
	BitcoinTestnetP2WPKH string `json:"bitcoin_testnet_p2wpkh,omitempty"`
	BitcoinTestnetP2TR   string `json:"bitcoin_testnet_p2tr,omitempty"`
	BitcoinRegtestP2WPKH string `json:"bitcoin_regtest_p2wpkh,omitempty"`
	BitcoinRegtestP2TR   string `json:"bitcoin_regtest_p2tr,omitempty"`
	Solana               string `json:"solana,omitempty"`
}

type sealingJSON struct {
	KMSKeyARN      string `json:"kms_key_arn"`
	KEKID          string `json:"kek_id"`
	Generation     uint64 `json:"generation"`
	SealedAtUnixMs int64  `json:"sealed_at_unix_ms"`
}

type keysJSON struct {
	Keys []keyJSON `json:"keys"`
}

type signatureJSON struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	Signature string `json:"signature"`
}

func newKeyJSON(k *signerv1.Key) keyJSON {
	return keyJSON{
		KeyID:           k.GetKeyId(),
		Algorithm:       algorithmName(k.GetAlgorithm()),
		PublicKey:       hex.EncodeToString(k.GetPublicKey()),
		State:           stateName(k.GetState()),
		CreatedAtUnixMs: k.GetCreatedAtUnixMs(),
		Labels:          k.GetLabels(),
		Addresses:       newAddressesJSON(k.GetAddresses()),
		Sealing:         newSealingJSON(k.GetSealing()),
	}
}

func newAddressesJSON(a *signerv1.Addresses) *addressesJSON {
	if a == nil {
		return nil
	}
	return &addressesJSON{
		Ethereum: a.GetEthereum(), BitcoinP2WPKH: a.GetBitcoinP2Wpkh(), BitcoinP2TR: a.GetBitcoinP2Tr(),
		BitcoinTestnetP2WPKH: a.GetBitcoinTestnetP2Wpkh(), BitcoinTestnetP2TR: a.GetBitcoinTestnetP2Tr(),
		BitcoinRegtestP2WPKH: a.GetBitcoinRegtestP2Wpkh(), BitcoinRegtestP2TR: a.GetBitcoinRegtestP2Tr(),
		Solana: a.GetSolana(),
	}
}

func newSealingJSON(s *signerv1.Sealing) *sealingJSON {
	if s == nil {
		return nil
	}
	return &sealingJSON{
		KMSKeyARN: s.GetKmsKeyArn(), KEKID: s.GetKekId(), Generation: s.GetGeneration(),
		SealedAtUnixMs: s.GetSealedAtUnixMs(),
	}
}

// algorithmName is "secp256k1", "ed25519", "unspecified", or the number of
// a value this build does not know.
func algorithmName(a signerv1.Algorithm) string {
	return strings.ToLower(strings.TrimPrefix(a.String(), "ALGORITHM_"))
}

// stateName is "enabled", "disabled", "unspecified", or the number of a
// value this build does not know.
func stateName(s signerv1.KeyState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "KEY_STATE_"))
}

func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fields prints aligned "name: value" lines.
func (c *cli) fields(pairs ...string) error {
	var rows [][]string
	for i := 0; i+1 < len(pairs); i += 2 {
		rows = append(rows, []string{pairs[i] + ":", pairs[i+1]})
	}
	return c.table(rows)
}

// table prints rows with aligned columns and no trailing blanks.
func (c *cli) table(rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := fmt.Fprintln(c.stdout, strings.TrimRight(line, " \n")); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) printKey(k *signerv1.Key) error {
	return c.printKeyVerified(k, nil)
}

// printKeyVerified prints a key; with res, also that its proof verified
// against the attested enclave res.
func (c *cli) printKeyVerified(k *signerv1.Key, res *verify.Result) error {
	if c.cfg.json {
		j := newKeyJSON(k)
		if res != nil {
			j.Verified, j.EnclaveModuleID = true, res.ModuleID
		}
		return c.writeJSON(j)
	}
	pairs := []string{
		"key_id", printable(k.GetKeyId()),
		"algorithm", algorithmName(k.GetAlgorithm()),
		"public_key", hex.EncodeToString(k.GetPublicKey()),
		"state", stateName(k.GetState()),
		"created_at", formatUnixMs(k.GetCreatedAtUnixMs()),
	}
	if len(k.GetLabels()) > 0 {
		pairs = append(pairs, "labels", printable(strings.Join(sortedLabels(k.GetLabels()), ", ")))
	}
	if a := newAddressesJSON(k.GetAddresses()); a != nil {
		for _, p := range [][2]string{
			{"ethereum", a.Ethereum}, {"bitcoin_p2wpkh", a.BitcoinP2WPKH}, {"bitcoin_p2tr", a.BitcoinP2TR},
			{"bitcoin_testnet_p2wpkh", a.BitcoinTestnetP2WPKH}, {"bitcoin_testnet_p2tr", a.BitcoinTestnetP2TR},
			{"bitcoin_regtest_p2wpkh", a.BitcoinRegtestP2WPKH}, {"bitcoin_regtest_p2tr", a.BitcoinRegtestP2TR},
			{"solana", a.Solana},
		} {
			if p[1] != "" {
				pairs = append(pairs, "address."+p[0], printable(p[1]))
			}
		}
	}
	if sl := k.GetSealing(); sl != nil {
		pairs = append(pairs, "kms_key_arn", printable(sl.GetKmsKeyArn()), "kek_id", printable(sl.GetKekId()),
			"generation", fmt.Sprint(sl.GetGeneration()))
	}
	if res != nil {
		pairs = append(pairs, "verified", "public key and addresses signed by attested enclave "+printable(res.ModuleID))
	}
	return c.fields(pairs...)
}

func (c *cli) printKeys(keys []*signerv1.Key) error {
	if c.cfg.json {
		out := keysJSON{Keys: make([]keyJSON, 0, len(keys))}
		for _, k := range keys {
			out.Keys = append(out.Keys, newKeyJSON(k))
		}
		return c.writeJSON(out)
	}
	rows := [][]string{{"KEY_ID", "ALGORITHM", "STATE", "CREATED_AT", "PUBLIC_KEY", "LABELS"}}
	for _, k := range keys {
		rows = append(rows, []string{
			printable(k.GetKeyId()),
			algorithmName(k.GetAlgorithm()),
			stateName(k.GetState()),
			formatUnixMs(k.GetCreatedAtUnixMs()),
			hex.EncodeToString(k.GetPublicKey()),
			printable(strings.Join(sortedLabels(k.GetLabels()), ",")),
		})
	}
	return c.table(rows)
}

func (c *cli) printSignature(r *signerv1.SignResponse) error {
	out := signatureJSON{
		KeyID:     r.GetKeyId(),
		Algorithm: algorithmName(r.GetAlgorithm()),
		Signature: hex.EncodeToString(r.GetSignature()),
	}
	if c.cfg.json {
		return c.writeJSON(out)
	}
	return c.fields(
		"key_id", printable(out.KeyID),
		"algorithm", out.Algorithm,
		"signature", out.Signature,
	)
}

// formatUnixMs formats Unix milliseconds as RFC 3339 UTC with milliseconds.
func formatUnixMs(ms int64) string {
	return formatTime(time.UnixMilli(ms))
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// printable returns s unchanged when every rune is printable, and quoted
// otherwise, so that strings chosen by the server or by other callers
// (messages, labels) cannot send control sequences to a terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
