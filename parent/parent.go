// Package parent is the composition root of the proxy that runs on the
// parent EC2 instance: the client-facing gRPC server (TLS or mTLS, or
// plaintext on loopback and unix sockets only), health and reflection, and
// the link to the enclave.
//
// The parent is untrusted by design (DESIGN.md §1): it relays requests and
// answers but never holds key material.
package parent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/internal/link"
	"github.com/nitrosigner/nitrosigner/internal/transport"
	"github.com/nitrosigner/nitrosigner/parent/internal/creds"
	"github.com/nitrosigner/nitrosigner/parent/internal/kmsforward"
	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Defaults.
const (
	DefaultListen      = "tcp://127.0.0.1:50051"
	DefaultCallTimeout = 10 * time.Second
	// MinHealthInterval is the shortest Config.HealthInterval: the link is
	// reset when the enclave answers nothing for that long.
	MinHealthInterval = 100 * time.Millisecond
	// MaxRecvMsgSize bounds one client request; larger ones are refused
	// with ResourceExhausted before any work. The link's frame limit
	// (link.DefaultMaxFrame, the same on both ends) leaves room for such a
	// request plus its wrappers.
	MaxRecvMsgSize = 4 << 20
	// DefaultFreezePoll is Config.FreezePoll's default.
	DefaultFreezePoll = 5 * time.Second
	// streamWorkers is the size of the gRPC server's stream worker pool.
	streamWorkers = 128
)

// Config configures [Run].
type Config struct {
	// Listen is the client-facing gRPC address: tcp://HOST:PORT or
	// unix:///path. Without TLS only loopback and unix addresses are
	// allowed. Default DefaultListen.
	Listen string
	// Enclave is the enclave's link address, e.g. vsock://16:5000. Required.
	Enclave string
	// TLSCertFile and TLSKeyFile enable TLS (PEM files); both or neither.
	TLSCertFile, TLSKeyFile string
	// ClientCAFile, with TLS, requires and verifies client certificates
	// issued by these CAs (mTLS).
	ClientCAFile string
	// CallTimeout bounds every call forwarded to the enclave. Default
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// MetricsListen, if set, serves Prometheus metrics over plain HTTP at
	// /metrics on this address (tcp://HOST:PORT or unix:///path): request
	// counts and latencies by method and code, the parent's Go and process
	// metrics, and the enclave's own CPU, keys and heap. The figures hold no
	// secrets but tell an observer the request mix; keep the address on
	// loopback or a private network. Empty: no metrics listener.
	MetricsListen string
	// HealthInterval is how often the enclave is pinged to drive the gRPC
	// health status. A lost or new connection to the enclave triggers a
	// ping at once. When a ping and every other call go unanswered for
	// this long, the enclave has stalled: the link is reset and the calls
	// waiting on it fail with Unavailable. Default 2 s.
	HealthInterval time.Duration
	// Logger receives operator logs. Default slog.Default().
	Logger *slog.Logger
	// OnListen, if set, is called with the client listener's address once
	// the server accepts connections (used by tests).
	OnListen func(net.Addr)

	// Store is where sealed keys are kept: dir:///path (default
	// dir:///var/lib/nitrosigner/blobs) or s3://BUCKET/PREFIX?region=...
	// (see parent/internal/store).
	Store string
	// KMSForwardListen, if set, runs the KMS forwarder on this address
	// (production vsock://any:8000): every connection is piped to
	// KMSForwardTarget. Leave it empty to run AWS's vsock-proxy instead.
	KMSForwardListen string
	// KMSForwardTarget is host:port of KMS, e.g.
	// kms.us-east-1.amazonaws.com:443.
	KMSForwardTarget string
	// KMSForwardAllow lists the host:port targets the forwarder may dial;
	// default: KMSForwardTarget only.
	KMSForwardAllow []string
	// Credentials, if set, provides the AWS credentials pushed to the
	// enclave for its KMS calls (the default AWS chain in production). Nil:
	// none are pushed.
	Credentials aws.CredentialsProvider
	// CredentialsInterval is the longest time between two pushes. Default
	// one minute.
	CredentialsInterval time.Duration
	// FreezePoll is how often the freeze state is read from the store, so
	// that a freeze made through another parent sharing the store stops
	// signing here too. Default 5 s.
	FreezePoll time.Duration
}

// DefaultStore is where sealed keys are kept without Config.Store.
const DefaultStore = "dir:///var/lib/nitrosigner/blobs"

// Validate applies defaults and checks cfg.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Enclave == "" {
		return errors.New("parent: Enclave address is required")
	}
	if _, err := transport.Parse(c.Enclave); err != nil {
		return fmt.Errorf("parent: Enclave: %w", err)
	}
	addr, err := transport.Parse(c.Listen)
	if err != nil {
		return fmt.Errorf("parent: Listen: %w", err)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("parent: TLS needs both a certificate and a key file")
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("parent: client CA (mTLS) needs a TLS certificate and key")
	}
	if c.TLSCertFile == "" {
		switch addr.Network {
		case "unix":
		case "tcp":
			if !loopback(addr.HostPort) {
				return fmt.Errorf("parent: refusing plaintext gRPC on non-loopback address %s; set a TLS certificate and key", c.Listen)
			}
		default:
			return fmt.Errorf("parent: cannot serve clients on %s", c.Listen)
		}
	}
	if c.MetricsListen != "" {
		if _, err := transport.Parse(c.MetricsListen); err != nil {
			return fmt.Errorf("parent: MetricsListen: %w", err)
		}
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.Store == "" {
		c.Store = DefaultStore
	}
	if c.KMSForwardListen != "" {
		if _, err := transport.Parse(c.KMSForwardListen); err != nil {
			return fmt.Errorf("parent: KMSForwardListen: %w", err)
		}
		if c.KMSForwardTarget == "" {
			return errors.New("parent: the KMS forwarder needs a target (host:port of KMS)")
		}
		if len(c.KMSForwardAllow) == 0 {
			c.KMSForwardAllow = []string{c.KMSForwardTarget}
		}
	}
	if c.CredentialsInterval <= 0 {
		c.CredentialsInterval = time.Minute
	}
	if c.FreezePoll <= 0 {
		c.FreezePoll = DefaultFreezePoll
	}
	switch {
	case c.HealthInterval == 0:
		c.HealthInterval = 2 * time.Second
	case c.HealthInterval < MinHealthInterval:
		// A silent spell this short is a GC pause or a busy scheduler, not
		// a stalled enclave; resetting the link on it would fail good calls.
		return fmt.Errorf("parent: HealthInterval %v is below the minimum %v", c.HealthInterval, MinHealthInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("parent: load TLS key pair: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("parent: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("parent: no certificate in client CA file %s", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Run serves clients until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	log := cfg.Logger

	dial, err := transport.Dialer(cfg.Enclave)
	if err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	// A new connection may be a restarted enclave, which has lost the AWS
	// credentials it needs for KMS and the freeze state: push them on every
	// (re)connect.
	var onConnect atomic.Pointer[func(context.Context) error]
	// A lost or new connection makes the health watcher ping the enclave
	// at once instead of at its next tick, so that health checks see an
	// enclave go down or come back within milliseconds.
	recheck := make(chan struct{}, 1)
	kick := func() {
		select {
		case recheck <- struct{}{}:
		default:
		}
	}
	lc, err := link.NewClient(link.ClientConfig{
		Dial:        func(ctx context.Context) (net.Conn, error) { return dial(ctx, "") },
		CallTimeout: cfg.CallTimeout,
		Logger:      log.With("component", "link"),
		OnConnect: func() {
			defer kick()
			push := onConnect.Load()
			if push == nil {
				return
			}
			if err := (*push)(ctx); err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "pushing state to the enclave failed", "err", err)
			}
		},
		OnDisconnect: kick,
	})
	if err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	defer lc.Close()
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("parent: store: %w", err)
	}
	var pusher *creds.Pusher
	var onCreds func(context.Context) error
	if cfg.Credentials != nil {
		pusher = creds.New(cfg.Credentials, lc, log.With("component", "creds"))
		onCreds = pusher.Refresh
	}
	svc := proxy.New(proxy.Config{
		Enclave: lc, Store: st, CallTimeout: cfg.CallTimeout, Logger: log, OnKMSCredentials: onCreds,
		FreezeFromStore: true,
		FreezeMaxStale:  3 * cfg.FreezePoll,
	})
	defer svc.Close()
	push := func(ctx context.Context) error {
		var err error
		if pusher != nil {
			if perr := pusher.Push(ctx); perr != nil {
				err = fmt.Errorf("AWS credentials: %w", perr)
			}
		}
		if ferr := svc.PushFreeze(ctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("freeze state: %w", ferr))
		}
		// A restarted enclave learns the changes made while it was down
		// now rather than at the next poll.
		cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		defer cancel()
		if cerr := svc.SyncChanges(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("key change log: %w", cerr))
		}
		return err
	}
	onConnect.Store(&push)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		proxy.NewEnclaveCollector(svc, 2*time.Second),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nitrosigner_signing_frozen",
			Help: "1 while the freeze switch stops all signing (frozen, or its state not yet read from the store), else 0.",
		}, func() float64 {
			if frozen, known := svc.SigningFrozen(); frozen || !known {
				return 1
			}
			return 0
		}))
	metrics := proxy.NewMetrics(reg)

	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(proxy.UnaryInterceptor(log, metrics)),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ForceServerCodecV2(proxy.NewCodec()),
		// Serve streams on a pool of long-lived goroutines instead of a new
		// goroutine (and its stack growth) per call. The pool covers the
		// concurrency a proxy sees: with 2 workers, 64 concurrent clients
		// spilled onto fresh goroutines and stack copying took ~8% of the
		// parent's CPU; 128 workers cut about 12 µs per call (make bench,
		// paired runs; docs/performance.md). Idle workers cost only their
		// stacks.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(opts...)
	proxy.Register(gs, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	// Read the freeze state before serving, so that a parent restarted
	// during an incident comes up frozen. If the store cannot be read,
	// signing is refused (Unavailable) until it can.
	freezeErr := syncFreeze(ctx, svc, cfg.CallTimeout)
	if freezeErr != nil {
		log.WarnContext(ctx, "reading the freeze state from the store failed; signing is refused until it can be read", "err", freezeErr)
	}

	l, err := transport.Listen(ctx, cfg.Listen)
	if err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	var ml net.Listener
	if cfg.MetricsListen != "" {
		if ml, err = transport.Listen(ctx, cfg.MetricsListen); err != nil {
			l.Close()
			return fmt.Errorf("parent: metrics: %w", err)
		}
		log.InfoContext(ctx, "metrics serving", "addr", cfg.MetricsListen)
	}
	log.InfoContext(ctx, "parent serving", "addr", cfg.Listen, "enclave", cfg.Enclave, "tls", tc != nil,
		"mtls", cfg.ClientCAFile != "", "store", cfg.Store)
	if cfg.OnListen != nil {
		cfg.OnListen(l.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := gs.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("parent: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(cfg.CallTimeout):
			gs.Stop()
		}
		return nil
	})
	g.Go(func() error {
		watchEnclave(gctx, svc, hs, cfg.HealthInterval, recheck, log, onCreds, lc)
		return nil
	})
	g.Go(func() error {
		pollFreeze(gctx, svc, cfg.FreezePoll, cfg.CallTimeout, freezeErr != nil, log)
		return nil
	})
	if pusher != nil {
		g.Go(func() error {
			pusher.Run(gctx, cfg.CredentialsInterval)
			return nil
		})
	}
	if cfg.KMSForwardListen != "" {
		g.Go(func() error {
			err := kmsforward.Run(gctx, kmsforward.Config{
				Listen: cfg.KMSForwardListen, Target: cfg.KMSForwardTarget, Allow: cfg.KMSForwardAllow,
				Logger: log.With("component", "kmsforward"),
			})
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("parent: KMS forwarder: %w", err)
			}
			return nil
		})
		log.InfoContext(ctx, "KMS forwarder", "listen", cfg.KMSForwardListen, "target", cfg.KMSForwardTarget)
	}
	if ml != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			MaxRequestsInFlight: 4,
			Timeout:             5 * time.Second,
		}))
		hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := hsrv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("parent: metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			// A scrape may wait on the enclave (at most its 2 s timeout);
			// past that, connections are closed: stopping is not an error.
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := hsrv.Shutdown(sctx); err != nil {
				hsrv.Close()
			}
			return nil
		})
	}
	return g.Wait()
}

// stallReset is what watchEnclave needs of the link client.
type stallReset interface {
	Received() uint64
	Reset(reason string)
}

// watchEnclave drives the gRPC health status (overall and per service) from
// pings of the enclave: every interval, and at once when recheck fires.
// onUp, if set, runs each time the enclave becomes reachable (a restarted
// enclave needs its AWS credentials again). A ping unanswered for a whole
// interval while no other answer arrived either means the enclave has
// stalled (hung, or stopped): the link is reset, so that the calls waiting
// on it fail with Unavailable instead of running into their deadlines, and
// new calls find out on a fresh connection. A busy enclave keeps
// answering, so it is never reset.
func watchEnclave(ctx context.Context, svc *proxy.Service, hs *health.Server, every time.Duration, recheck <-chan struct{}, log *slog.Logger, onUp func(context.Context) error, link stallReset) {
	var last healthpb.HealthCheckResponse_ServingStatus = -1
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		before := link.Received()
		pctx, cancel := context.WithTimeout(ctx, every)
		err := svc.Ping(pctx)
		cancel()
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			if status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil && link.Received() == before {
				log.WarnContext(ctx, "enclave answered nothing for a ping interval; resetting the link", "interval", every)
				link.Reset(fmt.Sprintf("enclave answered nothing for %v", every))
			}
		}
		if st != last && ctx.Err() == nil {
			if err != nil {
				log.WarnContext(ctx, "enclave not reachable", "err", err)
			} else {
				log.InfoContext(ctx, "enclave reachable")
				// Credentials first, so that SERVING means ready for KMS.
				if onUp != nil {
					if err := onUp(ctx); err != nil {
						log.WarnContext(ctx, "pushing AWS credentials to the enclave failed", "err", err)
					}
				}
			}
			hs.SetServingStatus("", st)
			hs.SetServingStatus(signerv1.SignerService_ServiceDesc.ServiceName, st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-recheck:
		}
	}
}

// syncFreeze reads the freeze state from the store once, within timeout.
func syncFreeze(ctx context.Context, svc *proxy.Service, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return svc.SyncFreeze(ctx)
}

// pollFreeze reads the freeze state from the store every interval; while it
// has never been read (signing refused), every second at most. failing says
// whether the read before it failed. Each round also hands the enclave the
// key changes made through other parents (the store's change log).
func pollFreeze(ctx context.Context, svc *proxy.Service, every, timeout time.Duration, failing bool, log *slog.Logger) {
	changesFailing := false
	for {
		wait := every
		if _, known := svc.SigningFrozen(); !known {
			wait = min(every, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := syncFreeze(ctx, svc, timeout)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			log.WarnContext(ctx, "reading the freeze state from the store failed; retrying", "err", err)
		case err == nil && failing:
			log.InfoContext(ctx, "freeze state read from the store again")
		}
		failing = err != nil
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = svc.SyncChanges(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !changesFailing:
			log.WarnContext(ctx, "applying the key change log failed; retrying", "err", err)
		case err == nil && changesFailing:
			log.InfoContext(ctx, "key change log applied again")
		}
		changesFailing = err != nil
	}
}
