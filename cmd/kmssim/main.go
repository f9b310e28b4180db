//go:build !nosim

// Command kmssim runs the KMS simulator (internal/kmssim): an HTTPS server
// speaking the AWS KMS JSON protocol, with attestation-gated Recipient
// support, for development and tests. Never run it where real keys are at
// stake: key material sits unencrypted in its state directory.
//
// Usage:
//
//	kmssim --state DIR --access-key-id ID [--secret-access-key S] [flags]
//
// The secret may come from the environment variable KMSSIM_SECRET_ACCESS_KEY
// instead of the command line. On start kmssim writes DIR/ca.pem, the CA
// clients must trust. With --create-key NAME it makes sure a key with alias
// alias/NAME exists (creating it, with the --policy FILE key policy, on
// first start; re-applying a changed --policy on later starts), prints its
// ARN on stdout and writes it to DIR/key-arn. It stops gracefully on SIGINT
// or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	"github.com/nitrosigner/nitrosigner/verify"
)

// KeyARNFile is the file in the state directory that receives the ARN of
// the --create-key key.
const KeyARNFile = "key-arn"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	listen      string
	state       string
	nsmRoot     string
	nsmState    string
	accessKeyID string
	secret      string
	principal   string
	account     string
	region      string
	createKey   string
	policy      string
	allowDebug  bool
	tlsNames    stringList
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// run is the whole command; it returns the exit status (0 ok, 1 failure,
// 2 usage error).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("kmssim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4566", "TCP `address` to serve HTTPS on")
	fs.StringVar(&o.state, "state", "", "state `directory` (keys, policies, TLS CA); required")
	fs.StringVar(&o.nsmRoot, "nsm-root", "", "PEM `file` with the attestation root(s) to trust for Recipient (the NSM simulator's root.pem); without it every Recipient is refused")
	fs.StringVar(&o.nsmState, "nsm-state", "", "the NSM simulator's state `directory`: trust its root, creating the root first if no simulator has run yet (alternative to --nsm-root)")
	fs.StringVar(&o.accessKeyID, "access-key-id", "", "access key `id` clients sign with; required")
	fs.StringVar(&o.secret, "secret-access-key", "", "secret access `key` (default: $KMSSIM_SECRET_ACCESS_KEY); required")
	fs.StringVar(&o.principal, "principal", "", "principal `ARN` key policies see for the credential (default arn:aws:iam::ACCOUNT:user/kmssim)")
	fs.StringVar(&o.account, "account", "111122223333", "AWS account `id` in key ARNs")
	fs.StringVar(&o.region, "region", "us-east-1", "AWS `region` in key ARNs and SigV4 scopes")
	fs.StringVar(&o.createKey, "create-key", "", "ensure a key with alias alias/`NAME` exists; print its ARN and write it to STATE/"+KeyARNFile)
	fs.StringVar(&o.policy, "policy", "", "key policy `file` for the --create-key key (default: KMS's default policy)")
	fs.BoolVar(&o.allowDebug, "allow-debug", false, "accept Recipient documents from debug-mode enclaves")
	fs.Var(&o.tlsNames, "tls-name", "extra DNS `name` or IP for the TLS certificate (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.secret == "" {
		o.secret = getenv("KMSSIM_SECRET_ACCESS_KEY")
	}
	if err := o.check(fs); err != nil {
		fmt.Fprintf(stderr, "kmssim: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := serve(ctx, &o, log, stdout); err != nil {
		log.Error("kmssim: stopped", "err", err)
		return 1
	}
	return 0
}

// check validates the options and fills in defaults.
func (o *options) check(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.state == "":
		return errors.New("--state is required")
	case o.accessKeyID == "":
		return errors.New("--access-key-id is required")
	case o.secret == "":
		return errors.New("--secret-access-key or KMSSIM_SECRET_ACCESS_KEY is required")
	case o.policy != "" && o.createKey == "":
		return errors.New("--policy needs --create-key")
	}
	if o.principal == "" {
		o.principal = "arn:aws:iam::" + o.account + ":user/kmssim"
	}
	if o.createKey != "" && !strings.HasPrefix(o.createKey, "alias/") {
		o.createKey = "alias/" + o.createKey
	}
	return nil
}

// serve runs the simulator until ctx ends.
func serve(ctx context.Context, o *options, log *slog.Logger, stdout io.Writer) error {
	cfg := kmssim.Config{
		StateDir: o.state,
		Credentials: map[string]kmssim.Credential{
			o.accessKeyID: {Secret: o.secret, PrincipalARN: o.principal},
		},
		Account:    o.account,
		Region:     o.region,
		AllowDebug: o.allowDebug,
		TLSNames:   o.tlsNames,
		Logger:     log,
	}
	if o.nsmState != "" {
		if o.nsmRoot != "" {
			return errors.New("give --nsm-root or --nsm-state, not both")
		}
		// Creating a simulator once makes (and persists) its root; the
		// enclave started later with the same --sim-state uses that root.
		sim, err := nsmsim.New(nsmsim.Config{StateDir: o.nsmState, Image: []byte("kmssim: root initialisation")})
		if err != nil {
			return fmt.Errorf("--nsm-state: %w", err)
		}
		if err := sim.Close(); err != nil {
			return fmt.Errorf("--nsm-state: %w", err)
		}
		o.nsmRoot = filepath.Join(o.nsmState, nsmsim.RootCertFile)
	}
	if o.nsmRoot != "" {
		roots, err := verify.LoadRoots(o.nsmRoot)
		if err != nil {
			return fmt.Errorf("--nsm-root: %w", err)
		}
		cfg.NSMRoots = roots
	} else {
		log.Warn("kmssim: no --nsm-root: every request with a Recipient will be refused")
	}
	var policy []byte
	if o.policy != "" {
		var err error
		if policy, err = os.ReadFile(o.policy); err != nil {
			return fmt.Errorf("read key policy: %w", err)
		}
	}

	srv, err := kmssim.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	if o.createKey != "" {
		arn, err := ensureKey(srv, o.createKey, policy, log)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.state, KeyARNFile), []byte(arn+"\n"), 0o644); err != nil {
			return fmt.Errorf("write key ARN: %w", err)
		}
		fmt.Fprintln(stdout, arn)
	}

	l, err := new(net.ListenConfig).Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("kmssim: listening", "url", "https://"+l.Addr().String(), "ca", filepath.Join(o.state, kmssim.CACertFile),
		"access_key_id", o.accessKeyID, "principal", o.principal)
	return srv.Serve(ctx, l)
}

// ensureKey returns the ARN of the key behind alias, creating it with
// policy if it does not exist, and re-applying policy if it changed.
func ensureKey(srv *kmssim.Server, alias string, policy []byte, log *slog.Logger) (string, error) {
	arn, err := srv.KeyARN(alias)
	if errors.Is(err, kmssim.ErrKeyNotFound) {
		arn, err = srv.CreateKey(kmssim.KeyOptions{Description: "created by kmssim --create-key", Alias: alias, Policy: policy})
		if err != nil {
			return "", err
		}
		log.Info("kmssim: key created", "alias", alias, "key_arn", arn)
		return arn, nil
	}
	if err != nil {
		return "", err
	}
	if len(policy) > 0 {
		changed, err := srv.SetKeyPolicy(arn, policy)
		if err != nil {
			return "", err
		}
		if changed {
			log.Info("kmssim: key policy replaced from --policy", "alias", alias, "key_arn", arn)
		}
	}
	return arn, nil
}
