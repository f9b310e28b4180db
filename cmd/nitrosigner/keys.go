package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

const (
	keysSynopsis    = "nitrosigner [global flags] keys create|list|get|disable|enable|rotate|delete ..."
	createSynopsis  = "nitrosigner [global flags] keys create --alg secp256k1|ed25519|p256 [--label k=v ...] [--verify --pcrs FILE [--root PEM_FILE] [--allow-debug] [--max-age D]]"
	disableSynopsis = "nitrosigner [global flags] keys disable ID"
	enableSynopsis  = "nitrosigner [global flags] keys enable ID"
	rotateSynopsis  = "nitrosigner [global flags] keys rotate ID [--kms-key ARN]"
	deleteSynopsis  = "nitrosigner [global flags] keys delete ID --yes"
	listSynopsis    = "nitrosigner [global flags] keys list [--page-size N]"
	getSynopsis     = "nitrosigner [global flags] keys get ID [--verify --pcrs FILE [--root PEM_FILE] [--allow-debug] [--max-age D]]"
	signSynopsis    = "nitrosigner [global flags] sign --key ID --digest HEX | --message HEX | --message-file PATH"
)

const keysHelp = `Subcommands:
  create   create a key inside the enclave
  list     list all keys (every page)
  get      show one key
  disable  stop a key from signing (at once, across restarts)
  enable   let a disabled key sign again
  rotate   re-seal a key under a new data key (optionally another KMS key)
  delete   destroy a key for good (its sealed blob is deleted)`

func (c *cli) keys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef(keysSynopsis, "keys: no subcommand given")
	}
	switch args[0] {
	case "create":
		return c.keysCreate(ctx, args[1:])
	case "list":
		return c.keysList(ctx, args[1:])
	case "get":
		return c.keysGet(ctx, args[1:])
	case "disable", "enable", "rotate", "delete":
		return c.keysLifecycle(ctx, args[0], args[1:])
	case "help", "-h", "-help", "--help":
		printHelp(c.stdout, newFlagSet("keys"), keysSynopsis, keysHelp)
		return errHelpShown
	default:
		return usagef(keysSynopsis, "keys: unknown subcommand %q", args[0])
	}
}

func (c *cli) keysCreate(ctx context.Context, args []string) error {
	fs := newFlagSet("keys create")
	alg := fs.String("alg", "", "key `algorithm`: secp256k1, ed25519 or p256 (required)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "`key=value` label to attach; repeat for more")
	vf := addVerifyFlags(fs, "check that an attested enclave vouches for the new key's public key and addresses; exit with status 1 if not")
	if err := parseFlags(fs, args, c.stdout, createSynopsis, "Create a key inside the enclave."+keyVerifyHelp); err != nil {
		return err
	}
	if err := noArgs(fs, createSynopsis); err != nil {
		return err
	}
	opts, err := vf.options(fs, createSynopsis)
	if err != nil {
		return err
	}
	algorithm, err := parseAlgorithm(*alg)
	if err != nil {
		return usagef(createSynopsis, "--alg: %v", err)
	}
	req := &signerv1.CreateKeyRequest{Algorithm: algorithm}
	if len(labels) > 0 {
		req.Labels = labels
	}
	if *vf.verify {
		if err := c.keyVerifyOptions(&opts); err != nil {
			return err
		}
		req.AttestationNonce = opts.Nonce
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		resp, err := client.CreateKey(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetKey() == nil {
			return errors.New("server returned no key")
		}
		if !*vf.verify {
			return c.printKey(resp.GetKey())
		}
		res, err := verify.AttestedKeyProof(resp.GetKey(), resp.GetProof(), opts)
		if err != nil {
			// The key exists; say which one, so it can be disabled.
			return keyVerificationFailed(resp.GetKey().GetKeyId(), err)
		}
		return c.printKeyVerified(resp.GetKey(), res)
	})
}

const keyVerifyHelp = `

With --verify the enclave signs a statement of the key (id, algorithm,
public key, addresses) and attests over a fresh nonce in the same answer;
the command checks the document (as attest --verify does: pin the image
with --pcrs) and the statement, and exits with status 1 if either fails.
Do this before paying to an address: the parent that relays answers is not
trusted and could otherwise show an address of its own.`

// keyVerifyOptions completes opts for a key proof: a fresh nonce, and a
// warning when no PCRs pin the image.
func (c *cli) keyVerifyOptions(opts *verify.Options) error {
	nonce, err := verify.NewNonce(nil)
	if err != nil {
		return err
	}
	opts.Nonce = nonce
	if len(opts.PCRs) == 0 {
		opts.AnyImage = true
		fmt.Fprintln(c.stderr, "nitrosigner: warning: no --pcrs: the statement is checked against an attested enclave, but any enclave image passes; pin the expected measurements with --pcrs")
	}
	return nil
}

// keyVerificationFailed reports a key whose proof did not verify.
func keyVerificationFailed(id string, err error) error {
	if errors.Is(err, verify.ErrUnknownRoot) {
		err = fmt.Errorf("%w (for the simulated enclave of make run, add --root .run/nsmsim/root.pem)", err)
	}
	return &codedError{code: codes.Unauthenticated, err: fmt.Errorf("key %s: verification failed; do not use its addresses: %w", printable(id), err)}
}

func (c *cli) keysList(ctx context.Context, args []string) error {
	fs := newFlagSet("keys list")
	pageSize := fs.Int("page-size", 0, "keys per request, 1..1000 (default: the server's, 100); all pages are printed")
	if err := parseFlags(fs, args, c.stdout, listSynopsis, "List all keys, following every page."); err != nil {
		return err
	}
	if err := noArgs(fs, listSynopsis); err != nil {
		return err
	}
	if *pageSize < 0 || *pageSize > maxPageSize {
		return usagef(listSynopsis, "--page-size must be between 0 and 1000")
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		keys, err := listAll(ctx, client, int32(*pageSize))
		if err != nil {
			return err
		}
		return c.printKeys(keys)
	})
}

// listAll follows next_page_token until the last page. A server that repeats
// a token would loop forever, so that is an error; the context deadline
// bounds the rest.
func listAll(ctx context.Context, client signerv1.SignerServiceClient, pageSize int32) ([]*signerv1.Key, error) {
	keys := []*signerv1.Key{}
	seen := make(map[string]bool)
	token := ""
	for {
		resp, err := client.ListKeys(ctx, &signerv1.ListKeysRequest{PageSize: pageSize, PageToken: token})
		if err != nil {
			return nil, err
		}
		keys = append(keys, resp.GetKeys()...)
		token = resp.GetNextPageToken()
		if token == "" {
			return keys, nil
		}
		if seen[token] {
			return nil, fmt.Errorf("server repeated page token %q", token)
		}
		seen[token] = true
	}
}

func (c *cli) keysGet(ctx context.Context, args []string) error {
	fs := newFlagSet("keys get")
	vf := addVerifyFlags(fs, "check that an attested enclave vouches for the key's public key and addresses; exit with status 1 if not")
	id, err := parseWithID(fs, args, c.stdout, getSynopsis, "Show the public description of one key."+keyVerifyHelp, "keys get")
	if err != nil {
		return err
	}
	opts, err := vf.options(fs, getSynopsis)
	if err != nil {
		return err
	}
	if *vf.verify {
		if err := c.keyVerifyOptions(&opts); err != nil {
			return err
		}
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		if *vf.verify {
			k, res, err := verify.FetchKey(ctx, client, id, opts)
			if errors.Is(err, verify.ErrRequest) {
				return err // the gRPC status is reported as is
			}
			if err != nil {
				return keyVerificationFailed(id, err)
			}
			return c.printKeyVerified(k, res)
		}
		resp, err := client.GetKey(ctx, &signerv1.GetKeyRequest{KeyId: id})
		if err != nil {
			return err
		}
		if resp.GetKey() == nil {
			return errors.New("server returned no key")
		}
		return c.printKey(resp.GetKey())
	})
}

var lifecycleHelp = map[string][2]string{
	"disable": {disableSynopsis, "Stop a key from signing. Takes effect at once on the instance that serves the call and survives\nrestarts; with several instances, see docs/deployment.md §12."},
	"enable":  {enableSynopsis, "Let a disabled key sign again."},
	"rotate": {rotateSynopsis, `Re-seal a key under a new data key (KEK), from the enclave's default KMS key or
from --kms-key, which must be one the enclave trusts. The key, its public key
and addresses do not change.`},
	"delete": {deleteSynopsis, `Destroy a key: its sealed blob is deleted from the store and the enclave
drops it. The key can never be used again. Requires --yes.`},
}

// keysLifecycle runs keys disable|enable|rotate|delete ID.
func (c *cli) keysLifecycle(ctx context.Context, sub string, args []string) error {
	synopsis, help := lifecycleHelp[sub][0], lifecycleHelp[sub][1]
	fs := newFlagSet("keys " + sub)
	var kmsKey *string
	var yes *bool
	switch sub {
	case "rotate":
		kmsKey = fs.String("kms-key", "", "`ARN` of the KMS key for the new data key (default: the enclave's)")
	case "delete":
		yes = fs.Bool("yes", false, "confirm that the key is to be destroyed")
	}
	id, err := parseWithID(fs, args, c.stdout, synopsis, help, "keys "+sub)
	if err != nil {
		return err
	}
	if yes != nil && !*yes {
		return usagef(synopsis, "keys delete destroys the key for good; add --yes to confirm")
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		var key *signerv1.Key
		switch sub {
		case "disable":
			r, err := client.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: id})
			if err != nil {
				return err
			}
			key = r.GetKey()
		case "enable":
			r, err := client.EnableKey(ctx, &signerv1.EnableKeyRequest{KeyId: id})
			if err != nil {
				return err
			}
			key = r.GetKey()
		case "rotate":
			r, err := client.RotateKey(ctx, &signerv1.RotateKeyRequest{KeyId: id, KmsKeyArn: *kmsKey})
			if err != nil {
				return err
			}
			key = r.GetKey()
		case "delete":
			if _, err := client.DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: id}); err != nil {
				return err
			}
			if c.cfg.json {
				return c.writeJSON(map[string]any{"key_id": id, "deleted": true})
			}
			return c.fields("key_id", id, "deleted", "true")
		}
		if key == nil {
			return errors.New("server returned no key")
		}
		return c.printKey(key)
	})
}

// maxPageSize is the service's largest ListKeys page.
const maxPageSize = 1000

// maxMessage is the service's limit on a raw message (MaxMessageSize in the
// parent and the enclave), checked here before anything is sent.
const maxMessage = 64 << 10

const signHelp = `Sign one payload. Give exactly one of --digest (secp256k1 or p256: a
32-byte digest signed as is; the answer is r || s || v for secp256k1 and
r || s for p256), --message (ed25519: the
message itself) and --message-file (the same message, read as raw bytes from
a file, or from standard input with -; for messages too long for a command
line). HEX may start with 0x.`

func (c *cli) sign(ctx context.Context, args []string) error {
	if len(args) > 0 && chainKinds[args[0]] {
		return c.signChain(ctx, args[0], args[1:])
	}
	fs := newFlagSet("sign")
	keyID := fs.String("key", "", "`id` of the key to sign with (required)")
	digest := fs.String("digest", "", "32-byte digest to sign, in `hex` (secp256k1, p256)")
	message := fs.String("message", "", "message to sign, in `hex` (ed25519)")
	messageFile := fs.String("message-file", "", "`file` holding the message to sign as raw bytes, - for standard input (ed25519)")
	if err := parseFlags(fs, args, c.stdout, signSynopsis, signHelp); err != nil {
		return err
	}
	if err := noArgs(fs, signSynopsis); err != nil {
		return err
	}
	set := setFlags(fs)
	if *keyID == "" {
		return usagef(signSynopsis, "--key is required")
	}
	if n := btoi(set["digest"]) + btoi(set["message"]) + btoi(set["message-file"]); n != 1 {
		return usagef(signSynopsis, "give exactly one of --digest, --message and --message-file")
	}
	req := &signerv1.SignRequest{KeyId: *keyID}
	switch {
	case set["digest"]:
		b, err := parseHex(signSynopsis, "digest", *digest)
		if err != nil {
			return err
		}
		req.Payload = &signerv1.SignRequest_Digest{Digest: b}
	case set["message-file"]:
		b, err := readPayloadFile(signSynopsis, "message-file", *messageFile, maxMessage)
		if err != nil {
			return err
		}
		req.Payload = &signerv1.SignRequest_Message{Message: b}
	default:
		b, err := parseHex(signSynopsis, "message", *message)
		if err != nil {
			return err
		}
		req.Payload = &signerv1.SignRequest_Message{Message: b}
	}
	return c.withClient(func(client signerv1.SignerServiceClient) error {
		resp, err := client.Sign(ctx, req)
		if err != nil {
			return err
		}
		return c.printSignature(resp)
	})
}

// parseHex decodes the non-empty hex value of --name, with or without a 0x
// prefix. Errors are usage errors naming the flag, with synopsis as the
// usage line.
func parseHex(synopsis, name, value string) ([]byte, error) {
	s := value
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if s == "" {
		return nil, usagef(synopsis, "--%s is empty", name)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, usagef(synopsis, "--%s is not valid hex: %s", name,
			strings.TrimPrefix(err.Error(), "encoding/hex: "))
	}
	return b, nil
}

// parseAlgorithm maps a short algorithm name to the enum.
func parseAlgorithm(name string) (signerv1.Algorithm, error) {
	switch strings.ToLower(name) {
	case "secp256k1":
		return signerv1.Algorithm_ALGORITHM_SECP256K1, nil
	case "ed25519":
		return signerv1.Algorithm_ALGORITHM_ED25519, nil
	case "p256":
		return signerv1.Algorithm_ALGORITHM_P256, nil
	case "":
		return 0, errors.New("required (secp256k1, ed25519 or p256)")
	default:
		return 0, fmt.Errorf("unknown algorithm %q (want secp256k1, ed25519 or p256)", name)
	}
}

// labelsFlag collects repeated --label key=value flags.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	return strings.Join(sortedLabels(l), ",")
}

func (l labelsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = val
	return nil
}

// sortedLabels returns labels as "k=v" strings ordered by key.
func sortedLabels(labels map[string]string) []string {
	out := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, k+"="+labels[k])
	}
	return out
}

// parseWithID parses the flags of a command that takes exactly one key id,
// given before or after the flags.
func parseWithID(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, help, cmd string) (string, error) {
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout, synopsis, help); err != nil {
		return "", err
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() != 0 || id == "" {
		return "", usagef(synopsis, "%s: want exactly one key id", cmd)
	}
	return id, nil
}
