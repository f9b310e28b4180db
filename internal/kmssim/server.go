//go:build !nosim

package kmssim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/fsutil"
)

// Errors returned by the simulator's Go API.
var (
	// ErrStateDirInUse is returned by [New] when another Server (in this
	// process or another) holds the state directory.
	ErrStateDirInUse = errors.New("kmssim: state directory is in use by another simulator")

	// ErrKeyNotFound is returned by the administrative methods when no key
	// matches the given key id, key ARN or alias.
	ErrKeyNotFound = errors.New("kmssim: key not found")
)

// Credential is one configured AWS credential.
type Credential struct {
	// Secret is the secret access key that signs requests (SigV4). Never
	// logged.
	Secret string

	// SessionToken, when set, must be sent in X-Amz-Security-Token, as with
	// temporary (STS) credentials. When empty, requests carrying a token are
	// refused.
	SessionToken string

	// PrincipalARN is the identity key policies see for this credential,
	// e.g. arn:aws:iam::111122223333:role/signer-parent or an assumed-role
	// session ARN. Required.
	PrincipalARN string
}

// Config configures a [Server]. Zero optional fields select the documented
// defaults.
type Config struct {
	// StateDir is the directory holding keys, key policies, key states and
	// key material ([StateFile], mode 0600) and the TLS CA ([CACertFile],
	// [CAKeyFile]). It is created (mode 0700) if missing, and locked for as
	// long as the Server is open. Required.
	StateDir string

	// Credentials maps access key ids to credentials. Requests must be
	// signed with one of them. At least one is required.
	Credentials map[string]Credential

	// Account is the 12-digit AWS account id in key ARNs. Default
	// "111122223333". A state directory stays bound to its account and
	// region.
	Account string

	// Region is the region in key ARNs and the one SigV4 credential scopes
	// must name. Default "us-east-1".
	Region string

	// NSMRoots are the attestation roots Recipient documents must chain to
	// (the NSM simulator's root, see nsmsim.LoadRoot). Nil or empty trusts
	// nothing, so every request with a Recipient is refused. Passing the AWS
	// Nitro root makes the simulator accept real enclaves' documents.
	NSMRoots []*x509.Certificate

	// AllowDebug accepts Recipient documents from debug-mode enclaves
	// (PCR0-2 all zero). Real KMS accepts them and leaves the refusal to
	// key policies; the simulator refuses them by default so that a policy
	// mistake cannot hand keys to a debug enclave in tests.
	AllowDebug bool

	// AccountPolicy is an optional identity-style policy (the key policy
	// grammar of internal/kmspolicy) for the operations that name no key:
	// CreateKey, ListKeys, ListAliases and GenerateRandom, evaluated with
	// resource "*". Empty allows them to every configured credential.
	AccountPolicy []byte

	// TLSNames are extra DNS names or IP addresses for the TLS server
	// certificate, on top of localhost, 127.0.0.1, ::1 and
	// kms.<Region>.amazonaws.com.
	TLSNames []string

	// Now is the clock for SigV4 freshness, attestation verification, key
	// timestamps and deletion windows. Default time.Now. TLS certificates
	// always use the wall clock.
	Now func() time.Time

	// Rand is the source of key material, data keys, GenerateRandom bytes,
	// nonces and CMS content keys. Default crypto/rand.Reader.
	Rand io.Reader

	// Logger receives one record per request (operation, code, key id,
	// principal, duration) and state errors; never secrets. Default:
	// discard.
	Logger *slog.Logger
}

var accountPattern = regexp.MustCompile(`^[0-9]{12}$`)

// Server is the KMS simulator. It is safe for concurrent use. Create it with
// [New] and release its state directory with [Server.Close].
type Server struct {
	cfg     Config
	log     *slog.Logger
	faults  *Faults
	cert    tls.Certificate
	caPEM   []byte
	account *accountPolicy
	unlock  func()

	mu      sync.Mutex
	closed  bool
	keys    map[string]*key
	order   []string          // key ids in creation order
	aliases map[string]string // alias name → key id

	countMu sync.Mutex
	counts  map[string]int
}

// New validates cfg, applies defaults, locks and loads the state directory
// (creating the TLS CA on first use) and returns a Server ready to serve.
// It fails with [ErrStateDirInUse] when another Server holds the directory,
// and with a descriptive error when cfg is incomplete or the state is
// unreadable or belongs to another account or region.
func New(cfg Config) (*Server, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("kmssim: config: StateDir is required")
	}
	if len(cfg.Credentials) == 0 {
		return nil, errors.New("kmssim: config: at least one credential is required")
	}
	for id, c := range cfg.Credentials {
		if id == "" || c.Secret == "" || c.PrincipalARN == "" {
			return nil, fmt.Errorf("kmssim: config: credential %q needs an access key id, a secret and a principal ARN", id)
		}
	}
	if cfg.Account == "" {
		cfg.Account = "111122223333"
	} else if !accountPattern.MatchString(cfg.Account) {
		return nil, fmt.Errorf("kmssim: config: Account %q is not a 12-digit account id", cfg.Account)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	} else if !regionPattern.MatchString(cfg.Region) {
		return nil, fmt.Errorf("kmssim: config: Region %q is not a region name like us-east-1", cfg.Region)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	acct, err := parseAccountPolicy(cfg.AccountPolicy)
	if err != nil {
		return nil, fmt.Errorf("kmssim: config: AccountPolicy: %w", err)
	}

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("kmssim: create state dir: %w", err)
	}
	unlock, err := fsutil.Lock(filepath.Join(cfg.StateDir, lockFile), false)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrStateDirInUse, cfg.StateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("kmssim: lock state dir: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		faults:  &Faults{now: cfg.Now},
		account: acct,
		unlock:  unlock,
		counts:  map[string]int{},
	}
	if err := s.load(); err != nil {
		unlock()
		return nil, fmt.Errorf("kmssim: %w", err)
	}
	return s, nil
}

var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+$`)

// load reads the keys and sets up TLS.
func (s *Server) load() error {
	keys, order, aliases, err := loadState(s.cfg.StateDir, s.cfg.Account, s.cfg.Region)
	if err != nil {
		return err
	}
	s.keys, s.order, s.aliases = keys, order, aliases

	ca, caKey, caPEM, err := loadOrCreateCA(s.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	names := append([]string{"kms." + s.cfg.Region + ".amazonaws.com"}, s.cfg.TLSNames...)
	cert, err := issueServerCert(ca, caKey, names)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.cert, s.caPEM = cert, caPEM
	return nil
}

// Close releases the state directory. Requests still in flight fail with
// KMSInternalException if they try to change state. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.unlock()
	}
	return nil
}

// CACertPEM returns the PEM of the TLS CA that issued the server
// certificate (the content of [CACertFile] in the state directory).
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Faults returns the fault injector of this server.
func (s *Server) Faults() *Faults { return s.faults }

// Requests returns how many requests for op (e.g. "Decrypt") the server
// has received, including ones that failed or had a fault injected; ""
// counts requests for unknown or missing targets. Tests use it to count SDK
// retries.
func (s *Server) Requests(op string) int {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	return s.counts[op]
}

// TLSConfig returns a TLS configuration serving the simulator's
// certificate, for callers that run their own listener.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
}

// Serve answers HTTPS requests on l until ctx is done, then shuts down
// gracefully (waiting up to 5 seconds for requests in flight; requests
// delayed by injected latency are cancelled) and returns nil. It takes
// ownership of l. Other failures of the listener are returned.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	baseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		// HTTP/1.1 only: a graceful HTTP/2 shutdown waits up to a second
		// for clients to hang up, and a dropped connection (fault Drop)
		// should be a closed TCP connection, not a reset stream.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("kmssim: serve: %w", err)
	case <-ctx.Done():
	}
	cancel() // ends injected delays
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	err := srv.Shutdown(shutdownCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("kmssim: serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("kmssim: shutdown: %w", err)
	}
	return nil
}

// ListenAndServeTLS listens on the TCP address addr and calls
// [Server.Serve].
func (s *Server) ListenAndServeTLS(ctx context.Context, addr string) error {
	l, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("kmssim: listen: %w", err)
	}
	return s.Serve(ctx, l)
}

// maxBody bounds a request body: the largest KMS request (a 256 KiB
// attestation document in base64 plus a 6 KiB ciphertext) fits easily.
const maxBody = 1 << 20

// Handler returns the HTTP handler that speaks the KMS JSON 1.1 protocol,
// for callers that run their own http.Server ([Server.Serve] is the usual
// way). Real KMS is HTTPS only, so serve it over TLS. To drop a connection
// (fault [Drop], or a request whose injected latency is cut short) the
// handler panics with http.ErrAbortHandler, which net/http's server turns
// into a closed connection.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("X-Amzn-Requestid", newRequestID())
	// The Date header tells clients the server's clock; the SDK uses it to
	// correct its signing time after a skew error, as with real KMS.
	w.Header().Set("Date", s.cfg.Now().UTC().Format(http.TimeFormat))
	target := r.Header.Get("X-Amz-Target")
	op, isTrent := strings.CutPrefix(target, "TrentService.")
	if _, known := operations[op]; !isTrent || !known {
		op = "" // keeps the counters bounded
	}
	s.countMu.Lock()
	s.counts[op]++
	s.countMu.Unlock()

	if !s.faults.delay(r.Context()) {
		// The client gave up or the server is stopping: close the
		// connection rather than answer an empty 200.
		panic(http.ErrAbortHandler)
	}
	if fault := s.faults.next(op); fault != NoFault {
		s.log.InfoContext(r.Context(), "kmssim: injected fault", "method", op, "fault", fault.String())
		if fault == Drop {
			panic(http.ErrAbortHandler)
		}
		writeError(w, faultError(fault))
		return
	}

	c := &call{op: op}
	resp, aerr := s.handle(w, r, c)
	code := "OK"
	if aerr != nil {
		code = aerr.code
		writeError(w, aerr)
	} else {
		writeJSON(w, resp)
	}
	level := slog.LevelInfo
	if aerr != nil && aerr.status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "kmssim: request", "method", op, "code", code,
		"key_id", c.keyID, "principal", c.principal, "duration", time.Since(start))
}

// call carries per-request facts for logging.
type call struct {
	op        string
	principal string
	keyID     string
	cred      *Credential
}

// handle authenticates and dispatches one request. The answer body is
// owned by the caller, which clears it after sending.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, c *call) ([]byte, *apiError) {
	if r.Method != http.MethodPost {
		return nil, errUnknownOperation()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			// The code and status real KMS uses here are unknown [I].
			return nil, newAPIError(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "Request body exceeds %d bytes", maxBody)
		}
		return nil, errSerialization("Cannot read the request body")
	}
	defer clear(body)
	cred, aerr := s.authenticate(r, body)
	if aerr != nil {
		return nil, aerr
	}
	c.cred, c.principal = cred, cred.PrincipalARN
	h, ok := operations[c.op]
	if !ok {
		return nil, errUnknownOperation()
	}
	return h(s, c, body)
}

// newRequestID returns a random UUID for the X-Amzn-Requestid header.
func newRequestID() string {
	id, _ := newUUID(rand.Reader) // crypto/rand never fails since Go 1.24
	return id
}
