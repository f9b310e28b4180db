package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// defaultAddr is where the parent proxy listens by default.
const defaultAddr = "127.0.0.1:50051"

// defaultTimeout is the default deadline of a command. It is longer than
// the parent's default call timeout, which bounds each call the parent
// forwards to the enclave, so that a call to a slow enclave ends with the
// parent's error and its request id rather than a race between the two
// deadlines. (A request for which the parent does more, such as loading a
// key before signing, can still take longer.)
const defaultTimeout = 15 * time.Second

const topSynopsis = "nitrosigner [global flags] keys|sign|attest|freeze|unfreeze|eif|kms-policy ..."

const topHelp = `Commands:
  keys create --alg secp256k1|ed25519|p256 [--label k=v ...]  create a key
  keys list [--page-size N]                                list all keys
  keys get ID                                              show one key (with addresses)
  keys disable ID | keys enable ID                         stop / resume signing with a key
  keys rotate ID [--kms-key ARN]                           re-seal a key under a new data key
  keys delete ID --yes                                     destroy a key (crypto-shred)
  sign --key ID --digest HEX | --message HEX | --message-file PATH
                                                           sign a raw payload
  sign eth-tx|eth-message|eth-typed-data|psbt|solana --key ID --file PATH
  sign btc-sighash --key ID --sighash HEX --scheme ecdsa|schnorr
                                                           sign a chain payload
  freeze --reason TEXT | freeze status | unfreeze --yes  stop / resume all signing (incident response)
  attest [--nonce HEX] [--verify] [--root PEM_FILE] [--pcrs FILE] [--allow-debug] [--max-age D]
                                                           get (and verify) an attestation
  attest --doc FILE --verify [--at TIME] [--identity]      verify a stored document (offline)
  eif describe FILE [--pcrs FILE] | eif pcr --role ARN|--instance-id ID|--cert PEM | eif build ...
                                                           read an EIF, compute PCRs (offline)
  kms-policy --role-arn ARN --admin-arn ARN --pcrs FILE [--pcrs FILE] [--pcr N=HEX ...] [--no-pcr3] [--out FILE]
                                                           print a KMS key policy for enclave images (offline)

Run "nitrosigner COMMAND --help" for the flags of a command.`

// errHelpShown reports that help was printed on request; the exit status is 0.
var errHelpShown = errors.New("help shown")

// usageError is a mistake in the command line (including the contents of
// files it names). It is reported before the server is contacted, as
// "nitrosigner: InvalidArgument: ...", and exits with status 2.
type usageError struct {
	msg      string
	synopsis string // printed as "usage: ..." when not empty
}

func (e *usageError) Error() string { return e.msg }

// codedError is an error found by the CLI itself that has a gRPC code, so
// that it is reported like the server's errors ("nitrosigner: Code: ...").
type codedError struct {
	code codes.Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// GRPCStatus makes report print e under its code.
func (e *codedError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

func usagef(synopsis, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), synopsis: synopsis}
}

// globalConfig holds the flags that come before the command.
type globalConfig struct {
	target        string // gRPC target derived from --addr
	json          bool
	timeout       time.Duration
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string
}

// cli runs one command with the global configuration.
type cli struct {
	cfg    globalConfig
	stdout io.Writer
	stderr io.Writer
}

// run executes the command line args (without the program name), writes
// results to stdout and errors to stderr, and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return report(stderr, dispatch(ctx, args, stdout, stderr))
}

// report prints err, if any, and maps it to an exit status.
func report(stderr io.Writer, err error) int {
	var uerr *usageError
	var serr interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.As(err, &uerr):
		// The code name a server would give the same mistake, so that
		// scripts can match every refusal the same way.
		fmt.Fprintf(stderr, "nitrosigner: %s: %s\n", codes.InvalidArgument, uerr.msg)
		if uerr.synopsis != "" {
			fmt.Fprintf(stderr, "usage: %s\n", uerr.synopsis)
		}
		return 2
	case errors.As(err, &serr) && serr.GRPCStatus() != nil:
		s := serr.GRPCStatus()
		var rerr *requestError
		if errors.As(err, &rerr) {
			fmt.Fprintf(stderr, "nitrosigner: %s: %s (request id %s)\n", s.Code(), printable(s.Message()), printable(rerr.id))
			return 1
		}
		fmt.Fprintf(stderr, "nitrosigner: %s: %s\n", s.Code(), printable(s.Message()))
		return 1
	default:
		// Every error carries a code name, so that scripts can match one
		// pattern; an error no code describes better is Unknown.
		fmt.Fprintf(stderr, "nitrosigner: %s: %s\n", codes.Unknown, printable(err.Error()))
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg  globalConfig
		addr string
	)
	fs := newFlagSet("nitrosigner")
	fs.StringVar(&addr, "addr", defaultAddr, "server `address`: host:port, tcp://host:port or unix:///path")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object instead of text")
	fs.DurationVar(&cfg.timeout, "timeout", defaultTimeout, "deadline for the whole command")
	fs.StringVar(&cfg.tlsCA, "tls-ca", "", "PEM `file` of CA certificates that verify the server; enables TLS")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM client certificate `file` for mutual TLS (needs --tls-key)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM client key `file` for mutual TLS (needs --tls-cert)")
	fs.StringVar(&cfg.tlsServerName, "tls-server-name", "", "`name` expected in the server certificate (default: the host in --addr)")
	if err := parseFlags(fs, hoistGlobalFlags(fs, args), stdout, topSynopsis, topHelp); err != nil {
		return err
	}
	if err := cfg.validate(addr); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef(topSynopsis, "no command given")
	}

	c := &cli{cfg: cfg, stdout: stdout, stderr: stderr}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	switch rest[0] {
	case "keys":
		return c.keys(ctx, rest[1:])
	case "sign":
		return c.sign(ctx, rest[1:])
	case "attest":
		return c.attest(ctx, rest[1:])
	case "freeze":
		return c.freeze(ctx, rest[1:])
	case "unfreeze":
		return c.unfreeze(ctx, rest[1:])
	case "eif":
		// eif reads local files only; --json is global but eif takes it
		// itself.
		args := rest[1:]
		if cfg.json {
			args = append(append([]string(nil), args[:min(1, len(args))]...), append([]string{"--json"}, args[min(1, len(args)):]...)...)
		}
		return runEIF(ctx, args, stdout)
	case "kms-policy":
		return runKMSPolicy(rest[1:], stdout, stderr)
	case "help":
		printHelp(stdout, fs, topSynopsis, topHelp)
		return errHelpShown
	default:
		return usagef(topSynopsis, "unknown command %q", rest[0])
	}
}

// hoistGlobalFlags moves the global flags found anywhere in args (before or
// after the command, such as `keys get ID --json`) to the front, so that the
// global flag set sees them and the commands never do. Flags of the global
// set that take a value consume the next argument unless written
// --name=value. Everything after a "--" is left alone.
func hoistGlobalFlags(global *flag.FlagSet, args []string) []string {
	var front, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := global.Lookup(name)
		if f == nil || name == "h" || name == "help" {
			rest = append(rest, a)
			continue
		}
		front = append(front, a)
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !inline && !(ok && bf.IsBoolFlag()) && i+1 < len(args) {
			i++
			front = append(front, args[i])
		}
	}
	return append(front, rest...)
}

// validate checks the global flags and sets cfg.target from addr.
func (cfg *globalConfig) validate(addr string) error {
	target, err := parseAddr(addr)
	if err != nil {
		return usagef(topSynopsis, "--addr: %v", err)
	}
	cfg.target = target
	switch {
	case cfg.timeout <= 0:
		return usagef(topSynopsis, "--timeout must be positive")
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return usagef(topSynopsis, "--tls-cert and --tls-key go together")
	case cfg.tlsCA == "" && (cfg.tlsCert != "" || cfg.tlsServerName != ""):
		return usagef(topSynopsis, "--tls-cert, --tls-key and --tls-server-name need --tls-ca")
	}
	return nil
}

// parseAddr turns an --addr value into a gRPC target: host:port and
// tcp://host:port dial TCP, unix:///path dials a unix socket.
func parseAddr(addr string) (string, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, rest = "tcp", addr
	}
	switch scheme {
	case "tcp":
		if _, port, err := net.SplitHostPort(rest); err != nil || port == "" {
			return "", fmt.Errorf("%q is not host:port", addr)
		}
		return rest, nil
	case "unix":
		if !path.IsAbs(rest) {
			return "", fmt.Errorf("%q: want unix:///absolute/path", addr)
		}
		return "unix://" + rest, nil
	default:
		return "", fmt.Errorf("%q: unsupported scheme %q (want tcp or unix)", addr, scheme)
	}
}

// withClient connects to the server and calls f with a client. The
// connection is closed when f returns.
func (c *cli) withClient(f func(signerv1.SignerServiceClient) error) error {
	creds, err := c.transportCredentials()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(c.cfg.target,
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("nitrosigner-cli"),
		grpc.WithChainUnaryInterceptor(checkText, keepRequestID))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", c.cfg.target, err)
	}
	defer conn.Close()
	return f(signerv1.NewSignerServiceClient(conn))
}

// transportCredentials is plaintext without --tls-ca and TLS (mutual with
// --tls-cert) with it.
func (c *cli) transportCredentials() (credentials.TransportCredentials, error) {
	if c.cfg.tlsCA == "" {
		return insecure.NewCredentials(), nil
	}
	pemCA, err := os.ReadFile(c.cfg.tlsCA)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--tls-ca: %v", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, &usageError{msg: fmt.Sprintf("--tls-ca: no PEM certificates in %s", c.cfg.tlsCA)}
	}
	tc := &tls.Config{
		RootCAs:    pool,
		ServerName: c.cfg.tlsServerName,
		MinVersion: tls.VersionTLS12,
	}
	if c.cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.cfg.tlsCert, c.cfg.tlsKey)
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("--tls-cert/--tls-key: %v", err)}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

// newFlagSet returns a flag set that reports errors instead of printing
// them; parseFlags does the printing.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs. It prints help to stdout and returns
// errHelpShown for -h/--help, and returns a usage error for bad flags.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, help string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs, synopsis, help)
		return errHelpShown
	default:
		return usagef(synopsis, "%v", err)
	}
}

func printHelp(w io.Writer, fs *flag.FlagSet, synopsis, help string) {
	fmt.Fprintf(w, "usage: %s\n", synopsis)
	if help != "" {
		fmt.Fprintf(w, "\n%s\n", help)
	}
	if hasFlags(fs) {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// noArgs returns a usage error when fs has positional arguments left.
func noArgs(fs *flag.FlagSet, synopsis string) error {
	if fs.NArg() > 0 {
		return usagef(synopsis, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// requestError is a failed call's status error with the request id the
// parent gave it, which names the call in the parent's logs.
type requestError struct {
	err error
	id  string
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// GRPCStatus keeps the status of the wrapped error visible.
func (e *requestError) GRPCStatus() *status.Status { return status.Convert(e.err) }

// checkText is a client interceptor that refuses, as a usage error naming
// the field, a request whose text fields (key ids, labels, ARNs) are not
// valid UTF-8. gRPC would refuse to encode it with an Internal error that
// does not say which argument is wrong.
func checkText(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok {
		if field := invalidText(m.ProtoReflect(), ""); field != "" {
			return &usageError{msg: field + ": not valid UTF-8 text"}
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// invalidText returns the path (proto field names) of the first string
// field of m, at any depth, that is not valid UTF-8, or "".
func invalidText(m protoreflect.Message, prefix string) string {
	var bad string
	check := func(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string) string {
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.ValidString(v.String()) {
				return name
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			return invalidText(v.Message(), name+".")
		}
		return ""
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if bad = check(fd.MapKey(), k.Value(), name); bad == "" {
					bad = check(fd.MapValue(), mv, name)
				}
				return bad == ""
			})
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len() && bad == ""; i++ {
				bad = check(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i))
			}
		default:
			bad = check(fd, v, name)
		}
		return bad == ""
	})
	return bad
}

// pastDeadline reports whether ctx's deadline has passed. It reads the
// clock rather than only ctx.Err: the parent's reset for the same deadline
// can arrive before ctx's own timer has fired.
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// keepRequestID is a client interceptor: a failed call's error carries the
// x-request-id the parent answered with, so that a user can quote it. A
// call that ran out of the command's own time says so: gRPC may report it
// as the stream reset the parent sent when the deadline it was given passed.
func keepRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var header, trailer metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&header), grpc.Trailer(&trailer))...)
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.DeadlineExceeded && pastDeadline(ctx) {
		err = status.Error(codes.DeadlineExceeded, "no answer within the time allowed (--timeout)")
	}
	for _, md := range []metadata.MD{header, trailer} {
		if v := md.Get("x-request-id"); len(v) > 0 && v[0] != "" {
			return &requestError{err: err, id: v[0]}
		}
	}
	return err
}
