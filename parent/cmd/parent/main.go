// Command parent is the nitrosigner proxy on the parent EC2 instance. It only
// wires flags into parent.Config and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/nitrosigner/nitrosigner/internal/gctune"
	"github.com/nitrosigner/nitrosigner/parent/internal/creds"

	"github.com/nitrosigner/nitrosigner/parent"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("parent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg parent.Config
	fs.StringVar(&cfg.Listen, "listen", parent.DefaultListen, "client gRPC address (tcp://HOST:PORT or unix:///path); plaintext only on loopback or unix")
	fs.StringVar(&cfg.Enclave, "enclave", "vsock://16:5000", "enclave link address (vsock://CID:PORT, unix:///path, tcp://HOST:PORT)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate (PEM) for the client listener")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key (PEM) for the client listener")
	fs.StringVar(&cfg.ClientCAFile, "tls-client-ca", "", "require client certificates from these CAs (mTLS)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", parent.DefaultCallTimeout, "deadline for every call forwarded to the enclave")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", 2*time.Second, "how often the enclave is pinged for the gRPC health status (also at once when the link to it breaks or is made); when a ping and every other call go unanswered this long, the link is reset and the calls waiting on it fail with Unavailable")
	fs.DurationVar(&cfg.FreezePoll, "freeze-poll", parent.DefaultFreezePoll, "how often the freeze state and the key change log are read from the store, so that a freeze or a key change made through another parent sharing it holds here too")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (e.g. tcp://127.0.0.1:9464); empty = off")
	fs.StringVar(&cfg.Store, "store", parent.DefaultStore, "sealed key store: dir:///path or s3://BUCKET/PREFIX?region=R[&sse=aws:kms&sse-kms-key-id=ARN]")
	fs.StringVar(&cfg.KMSForwardListen, "kms-forward-listen", "", "run the KMS forwarder here (e.g. vsock://any:8000); empty = use AWS's vsock-proxy")
	fs.StringVar(&cfg.KMSForwardTarget, "kms-forward-target", "", "host:port the forwarder pipes to (e.g. kms.us-east-1.amazonaws.com:443)")
	allow := fs.String("kms-forward-allow", "", "comma-separated host:port targets the forwarder may dial (default: the target)")
	credsMode := fs.String("credentials", "aws", `AWS credentials pushed to the enclave: "aws" (default chain: IMDSv2 role, or the environment) or "none"`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	procs := fs.Int("procs", 0, "OS threads running Go code (GOMAXPROCS); 0 = half the CPUs available, at least 1. The GOMAXPROCS environment variable wins")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *procs < 0 {
		fmt.Fprintf(stderr, "parent: --procs must be 0 (half the CPUs) or more, got %d\n", *procs)
		return 2
	}
	if cfg.HealthInterval < parent.MinHealthInterval {
		fmt.Fprintf(stderr, "parent: --health-interval must be at least %v, got %v\n", parent.MinHealthInterval, cfg.HealthInterval)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "parent: --log-level: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *allow != "" {
		cfg.KMSForwardAllow = strings.Split(*allow, ",")
	}
	switch *credsMode {
	case "none":
	case "aws":
		awsCfg, err := config.LoadDefaultConfig(context.Background(),
			config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = creds.ExpiryWindow }))
		if err != nil {
			fmt.Fprintf(stderr, "parent: AWS credentials: %v\n", err)
			return 1
		}
		cfg.Credentials = awsCfg.Credentials
	default:
		fmt.Fprintf(stderr, "parent: --credentials must be \"aws\" or \"none\", got %q\n", *credsMode)
		return 2
	}

	gctune.Apply()
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(proxyProcs(*procs, runtime.GOMAXPROCS(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := parent.Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, err) // parent.Run's errors start with "parent: "
		return 1
	}
	return 0
}

// proxyProcs returns the GOMAXPROCS for the proxy: flag if positive, else
// half of available (Go's default, which follows CPU affinity and cgroup
// limits), at least 1.
//
// The proxy relays short calls and waits on sockets. Each additional P
// makes the Go scheduler hand goroutines between OS threads, and every
// hand-off to a sleeping thread is a futex wake-up; on the 2-vCPU test VM a
// second P doubled the parent's CPU per call (10 vs 19 µs per health check
// at 64 concurrent calls) and added about 40 µs to a lone call
// (docs/performance.md). One P relays more calls per second than two
// enclave vCPUs sign. Half the CPUs leaves the rest of the parent instance
// to the client applications and the vsock-proxy that share it.
func proxyProcs(flag, available int) int {
	if flag > 0 {
		return flag
	}
	return max(1, available/2)
}
