package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

const attestSynopsis = "nitrosigner [global flags] attest [--nonce HEX] [--verify] [--root PEM_FILE] [--pcrs FILE] [--allow-debug] [--max-age D] [--doc FILE [--at TIME] [--identity]]"

const attestHelp = `Get a fresh attestation document from the enclave. With --verify, check it
(signature chain, freshness, nonce, PCRs, debug mode, identity binding) and
exit with status 1 if any check fails. Without --verify nothing in the
document is interpreted.

With --doc FILE --verify, check a stored document instead (raw CBOR, hex or
base64) without contacting the server: --nonce is then the nonce it must
carry (not checked if omitted), --at the verification time (RFC 3339 or
Unix milliseconds; default now), and --identity also requires the
nitrosigner identity in user_data, which documents from other software do
not carry.

--pcrs takes nitro-cli's Measurements JSON, {"PCR0": "hex", ...} (optionally
inside {"Measurements": ...}), or {"0": "hex", ...}.`

// maxDocFileSize bounds --doc files; documents are under 16 KiB even as
// hex.
const maxDocFileSize = 1 << 20

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
// identity is the verified one with --verify and the server's claim without
// (with --doc, it is present only with --identity). nonce is the nonce sent,
// or with --doc the document's.
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
	nonceHex := fs.String("nonce", "", "nonce in `hex`, 1..512 bytes (default: 32 fresh random bytes); with --doc, the nonce the document must carry")
	vf := addVerifyFlags(fs, "verify the document; exit with status 1 if any check fails")
	docFile := fs.String("doc", "", "verify the attestation document in `file` (CBOR, hex or base64) instead of asking the server (needs --verify)")
	at := fs.String("at", "", "verification `time` for --doc: RFC 3339 or Unix milliseconds (default: now)")
	identity := fs.Bool("identity", false, "with --doc, also require the nitrosigner enclave identity in user_data")
	if err := parseFlags(fs, args, c.stdout, attestSynopsis, attestHelp); err != nil {
		return err
	}
	if err := noArgs(fs, attestSynopsis); err != nil {
		return err
	}
	set := setFlags(fs)
	switch {
	case !*vf.verify && set["doc"]:
		return usagef(attestSynopsis, "--root, --pcrs, --allow-debug, --max-age and --doc need --verify")
	case !set["doc"] && (set["at"] || set["identity"]):
		return usagef(attestSynopsis, "--at and --identity need --doc")
	}
	opts, err := vf.options(fs, attestSynopsis)
	if err != nil {
		return err
	}
	if set["nonce"] {
		nonce, err := parseHex(attestSynopsis, "nonce", *nonceHex)
		if err != nil {
			return err
		}
		// The server takes at most 512 bytes; stored documents may carry up
		// to 1024 (the NSM limit), which the verifier will compare.
		if len(nonce) > verify.MaxNonceSize && !set["doc"] {
			return usagef(attestSynopsis, "--nonce is %d bytes, longer than %d", len(nonce), verify.MaxNonceSize)
		}
		opts.Nonce = nonce
	}
	if set["at"] {
		t, err := parseTime(*at)
		if err != nil {
			return usagef(attestSynopsis, "--at: %v", err)
		}
		opts.Now = func() time.Time { return t }
	}
	if set["doc"] {
		return c.attestOffline(*docFile, *identity, opts)
	}

	if opts.Nonce == nil {
		nonce, err := verify.NewNonce(nil)
		if err != nil {
			return err
		}
		opts.Nonce = nonce
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		if !*vf.verify {
			resp, err := client.GetAttestation(ctx, &signerv1.GetAttestationRequest{Nonce: opts.Nonce})
			if err != nil {
				return err
			}
			return c.printAttestation(shownAttestation{
				document: resp.GetDocument(), nonce: opts.Nonce, nonceChecked: false, identity: resp.GetIdentity(),
			})
		}
		if len(opts.PCRs) == 0 {
			// Inspecting an enclave's PCRs is a legitimate use; trusting
			// its keys without them is not.
			opts.AnyImage = true
			fmt.Fprintln(c.stderr, "nitrosigner: warning: no --pcrs: chain, freshness, nonce and identity are checked, but any enclave image passes; pin the expected measurements with --pcrs")
		}
		res, err := verify.Fetch(ctx, client, opts)
		if errors.Is(err, verify.ErrRequest) {
			return err // the gRPC status is reported as is
		}
		if err != nil {
			if errors.Is(err, verify.ErrUnknownRoot) && opts.Roots == nil {
				err = fmt.Errorf("%w (if this is the simulated enclave of make run, which signs under its own root, add --root with its nsmsim/root.pem: .run/nsmsim/root.pem unless NITROSIGNER_RUN_DIR moved it)", err)
			}
			return verificationFailed(err)
		}
		return c.printAttestation(shownAttestation{
			document: res.Document, nonce: res.Nonce, nonceChecked: true, result: res, identity: res.Identity,
		})
	})
}

// attestOffline verifies the stored document in file with opts; with bind
// it also requires the identity binding.
func (c *cli) attestOffline(file string, bind bool, opts verify.Options) error {
	doc, err := readDocument(file)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--doc: %v", err)}
	}
	res, err := verify.Verify(doc, opts)
	if err != nil {
		return verificationFailed(err)
	}
	if bind {
		if _, err := res.BindIdentity(); err != nil {
			return verificationFailed(err)
		}
	}
	return c.printAttestation(shownAttestation{
		document: doc, nonce: res.Nonce, nonceChecked: opts.Nonce != nil, result: res, identity: res.Identity,
	})
}

// readDocument reads an attestation document stored as raw CBOR (first
// byte 0x84, a COSE_Sign1 array, or 0xd2, its tag), as hex (as printed by
// attest --json, white space and a 0x prefix allowed) or as base64.
func readDocument(file string) ([]byte, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxDocFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxDocFileSize)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 && (data[0] == 0x84 || data[0] == 0xd2) {
		return data, nil
	}
	text := strings.Join(strings.Fields(string(data)), "")
	if b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(text, "0x"), "0X")); err == nil && len(b) > 0 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(text); err == nil && len(b) > 0 {
		return b, nil
	}
	return nil, fmt.Errorf("%s: not an attestation document in CBOR, hex or base64", file)
}

// parseTime reads --at: Unix milliseconds or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a Unix time in milliseconds", s)
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix milliseconds", s)
	}
	return t, nil
}

// shownAttestation is what printAttestation prints.
type shownAttestation struct {
	document     []byte
	nonce        []byte // sent, or the document's with --doc (nil: absent)
	nonceChecked bool   // false with --doc and no --nonce
	result       *verify.Result
	identity     *signerv1.EnclaveIdentity // verified when result is set
}

// printAttestation prints a; a.result is nil when it was not verified.
func (c *cli) printAttestation(a shownAttestation) error {
	doc := a.result
	out := attestationJSON{
		Document: hex.EncodeToString(a.document),
		Nonce:    hex.EncodeToString(a.nonce),
		Verified: doc != nil,
	}
	if id := a.identity; id != nil {
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
		lines = append(lines, "document", fmt.Sprintf("%d bytes, not verified (use --verify; --json prints it)", len(a.document)))
	}
	nonce := out.Nonce
	if a.nonce == nil {
		nonce = "(absent)"
	}
	if !a.nonceChecked {
		nonce += " (not checked)"
	}
	lines = append(lines, "nonce", nonce)
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

// verificationFailed is a failed attestation check. It is reported under
// the code Unauthenticated, like every other error of the CLI under a gRPC
// code name: the enclave did not prove who it is.
func verificationFailed(err error) error {
	return &codedError{code: codes.Unauthenticated, err: fmt.Errorf("attestation verification failed: %w", err)}
}
