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
	"syscall"

	"github.com/nitrosigner/nitrosigner/internal/gctune"

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
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (e.g. tcp://127.0.0.1:9464); empty = off")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "parent: --log-level: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := parent.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "parent: %v\n", err)
		return 1
	}
	return 0
}
