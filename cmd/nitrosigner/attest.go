package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const attestSynopsis = "nitrosigner [global flags] attest [--nonce HEX] [--verify] [--root PEM_FILE] [--pcrs FILE] [--allow-debug]"

const attestHelp = `Get a fresh attestation document from the enclave. With --verify, check it
(signature chain, nonce, PCRs, debug mode, identity binding) and exit with
status 1 if any check fails. Without --verify nothing in the document is
interpreted.

--pcrs takes nitro-cli's Measurements JSON, {"PCR0": "hex", ...} (optionally
inside {"Measurements": ...}), or {"0": "hex", ...}.`

// defaultNonceSize is the length of the random nonce used without --nonce.
const defaultNonceSize = 32

// shownPCRs are the PCRs printed in text output: image, kernel, application,
// parent IAM role, parent instance and EIF signing certificate.
var shownPCRs = []int{0, 1, 2, 3, 4, 8}

type identityJSON struct {
	Version            uint32 `json:"version"`
	IdentityPublicKey  string `json:"identity_public_key"`
	KmsPublicKeySha256 string `json:"kms_public_key_sha256"`
}

// attestationJSON is printed by attest --json. module_id, timestamp_unix_ms
// and pcrs come from the verified document and are absent without --verify;
// identity is the verified one with --verify and the server's claim without.
type attestationJSON struct {
	Document        string            `json:"document"`
	Nonce           string            `json:"nonce"`
	ModuleID        string            `json:"module_id,omitempty"`
	TimestampUnixMs int64             `json:"timestamp_unix_ms,omitempty"`
	PCRs            map[string]string `json:"pcrs,omitempty"`
	Identity        *identityJSON     `json:"identity,omitempty"`
	Verified        bool              `json:"verified"`
}

func (c *cli) attest(ctx context.Context, args []string) error {
	fs := newFlagSet("attest")
	nonceHex := fs.String("nonce", "", "nonce in `hex`, 1..512 bytes (default: 32 fresh random bytes)")
	verify := fs.Bool("verify", false, "verify the document; exit with status 1 if any check fails")
	rootFile := fs.String("root", "", "PEM `file` with the root certificate to trust instead of the AWS Nitro root (simulated enclaves only)")
	pcrsFile := fs.String("pcrs", "", "JSON `file` of expected PCR values (needs --verify)")
	allowDebug := fs.Bool("allow-debug", false, "accept a debug-mode enclave, whose memory the parent can read (needs --verify)")
	if err := parseFlags(fs, args, c.stdout, attestSynopsis, attestHelp); err != nil {
		return err
	}
	if err := noArgs(fs, attestSynopsis); err != nil {
		return err
	}
	set := setFlags(fs)
	if !*verify && (set["root"] || set["pcrs"] || set["allow-debug"]) {
		return usagef(attestSynopsis, "--root, --pcrs and --allow-debug need --verify")
	}

	var nonce []byte
	if set["nonce"] {
		var err error
		if nonce, err = parseHex(attestSynopsis, "nonce", *nonceHex); err != nil {
			return err
		}
	} else {
		nonce = make([]byte, defaultNonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("make nonce: %w", err)
		}
	}
	opts := attest.Options{Nonce: nonce, AllowDebug: *allowDebug}
	if *rootFile != "" {
		roots, err := loadRoots(*rootFile)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--root: %v", err)}
		}
		opts.Roots = roots
	}
	if *pcrsFile != "" {
		pcrs, err := loadPCRs(*pcrsFile)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--pcrs: %v", err)}
		}
		opts.PCRs = pcrs
	}

	return c.withClient(func(client signerv1.SignerServiceClient) error {
		resp, err := client.GetAttestation(ctx, &signerv1.GetAttestationRequest{Nonce: nonce})
		if err != nil {
			return err
		}
		if !*verify {
			return c.printAttestation(resp, nonce, nil, resp.GetIdentity())
		}
		doc, id, err := verifyAttestation(resp, opts)
		if err != nil {
			return fmt.Errorf("attestation verification failed: %w", err)
		}
		return c.printAttestation(resp, nonce, doc, id)
	})
}

// verifyAttestation verifies resp's document with opts (which carries the
// nonce sent, so the verifier checks it) and checks that it binds the
// identity the server reported: the
// decoded user_data equals resp.identity, and the document's public_key
// hashes to identity.kms_public_key_sha256. It returns the verified document
// and identity.
func verifyAttestation(resp *signerv1.GetAttestationResponse, opts attest.Options) (*attest.Document, *signerv1.EnclaveIdentity, error) {
	doc, err := attest.Verify(resp.GetDocument(), opts)
	if err != nil {
		return nil, nil, err
	}
	if resp.GetIdentity() == nil {
		return nil, nil, errors.New("server sent no enclave identity")
	}
	if doc.UserData == nil {
		return nil, nil, errors.New("document has no user_data")
	}
	id := new(signerv1.EnclaveIdentity)
	if err := proto.Unmarshal(doc.UserData, id); err != nil {
		return nil, nil, fmt.Errorf("user_data is not an EnclaveIdentity: %w", err)
	}
	if !proto.Equal(id, resp.GetIdentity()) {
		return nil, nil, errors.New("identity in the response differs from the one in the document's user_data")
	}
	if want := id.GetKmsPublicKeySha256(); len(want) > 0 {
		got := sha256.Sum256(doc.PublicKey)
		if !bytes.Equal(got[:], want) {
			return nil, nil, errors.New("document public_key does not match the identity's kms_public_key_sha256")
		}
	}
	return doc, id, nil
}

// printAttestation prints the response; doc is nil when it was not verified.
func (c *cli) printAttestation(resp *signerv1.GetAttestationResponse, nonce []byte, doc *attest.Document, id *signerv1.EnclaveIdentity) error {
	out := attestationJSON{
		Document: hex.EncodeToString(resp.GetDocument()),
		Nonce:    hex.EncodeToString(nonce),
		Verified: doc != nil,
	}
	if id != nil {
		out.Identity = &identityJSON{
			Version:            id.GetVersion(),
			IdentityPublicKey:  hex.EncodeToString(id.GetIdentityPublicKey()),
			KmsPublicKeySha256: hex.EncodeToString(id.GetKmsPublicKeySha256()),
		}
	}
	if doc != nil {
		out.ModuleID = doc.ModuleID
		out.TimestampUnixMs = doc.Timestamp.UnixMilli()
		out.PCRs = make(map[string]string, len(doc.PCRs))
		for i, v := range doc.PCRs {
			out.PCRs[strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	}
	if c.cfg.json {
		return c.writeJSON(out)
	}

	var lines []string
	if doc != nil {
		lines = append(lines,
			"module_id", printable(doc.ModuleID),
			"timestamp", formatTime(doc.Timestamp))
		for _, i := range shownPCRs {
			v := "(absent)"
			if p, ok := doc.PCRs[i]; ok {
				v = hex.EncodeToString(p)
			}
			lines = append(lines, "PCR"+strconv.Itoa(i), v)
		}
	} else {
		lines = append(lines, "document", fmt.Sprintf("%d bytes, not verified (use --verify; --json prints it)", len(resp.GetDocument())))
	}
	lines = append(lines, "nonce", out.Nonce)
	if out.Identity != nil {
		suffix := ""
		if doc == nil {
			suffix = " (unverified)"
		}
		lines = append(lines,
			"identity_version", strconv.FormatUint(uint64(out.Identity.Version), 10)+suffix,
			"identity_public_key", out.Identity.IdentityPublicKey+suffix,
			"kms_public_key_sha256", out.Identity.KmsPublicKeySha256+suffix)
	}
	lines = append(lines, "verified", strconv.FormatBool(out.Verified))
	return c.fields(lines...)
}

// loadRoots reads the PEM certificates in file.
func loadRoots(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		roots = append(roots, cert)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return roots, nil
}

// loadPCRs reads expected PCR values from a JSON file; see parsePCRs.
func loadPCRs(file string) (map[int][]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pcrs, err := parsePCRs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return pcrs, nil
}

// parsePCRs decodes expected PCR values from JSON: nitro-cli's Measurements
// object ({"HashAlgorithm": "Sha384 { ... }", "PCR0": "hex", ...}), the same
// wrapped as {"Measurements": {...}} (nitro-cli build-enclave and
// describe-eif output), or an object keyed by bare index ({"0": "hex"}).
func parsePCRs(data []byte) (map[int][]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m, ok := obj["Measurements"]; ok {
		obj = nil
		if err := json.Unmarshal(m, &obj); err != nil {
			return nil, fmt.Errorf("the \"Measurements\" field is not a JSON object: %w", err)
		}
	}
	hexPCRs := make(map[int]string)
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		var v string
		if err := json.Unmarshal(obj[k], &v); err != nil {
			return nil, fmt.Errorf("%q: want a string", k)
		}
		if k == "HashAlgorithm" {
			if !strings.Contains(strings.ToLower(v), "sha384") {
				return nil, fmt.Errorf("HashAlgorithm %q is not SHA-384", v)
			}
			continue
		}
		n := strings.TrimPrefix(strings.ToUpper(k), "PCR")
		idx, err := strconv.Atoi(n)
		if err != nil || strings.Trim(n, "0123456789") != "" {
			return nil, fmt.Errorf("unknown key %q (want PCRn or n)", k)
		}
		if _, dup := hexPCRs[idx]; dup {
			return nil, fmt.Errorf("PCR%d given twice", idx)
		}
		hexPCRs[idx] = strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	}
	if len(hexPCRs) == 0 {
		return nil, errors.New("no PCR values")
	}
	return attest.ParsePCRs(hexPCRs)
}
