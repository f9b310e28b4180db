// Command enclave is the nitrosigner signer that runs inside a Nitro
// Enclave. It only wires flags into enclave.Config and runs it.
//
// On AWS it uses /dev/nsm. For local development (`make run`) it runs with
// the NSM simulator (`--nsm=sim`), which is compiled out of production images
// (`-tags nosim`) and refuses to start where /dev/nsm exists.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nitrosigner/nitrosigner/internal/gctune"

	"github.com/nitrosigner/nitrosigner/enclave"
	"github.com/nitrosigner/nitrosigner/enclave/internal/nsm"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// simFlags are the simulator's settings; they mean nothing with --nsm=device.
type simFlags struct {
	stateDir   string
	debug      bool
	instanceID string
	roleARN    string
	kmsCA      string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("enclave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", enclave.DefaultListen, "address the parent connects to (vsock://CID:PORT, unix:///path, tcp://HOST:PORT)")
	nsmMode := fs.String("nsm", "device", `attestation source: "device" (/dev/nsm) or "sim" (simulator, development only)`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var sf simFlags
	fs.StringVar(&sf.stateDir, "sim-state", "", "simulator: directory keeping the simulated root CA across restarts")
	fs.BoolVar(&sf.debug, "sim-debug", false, "simulator: behave like an enclave in debug mode (PCR0-2 zero)")
	fs.StringVar(&sf.instanceID, "sim-instance-id", "", "simulator: parent instance id for PCR4 (default random)")
	fs.StringVar(&sf.roleARN, "sim-role-arn", "", "simulator: parent IAM role ARN for PCR3")
	fs.StringVar(&sf.kmsCA, "kms-sim-ca", "", "simulator builds only: PEM file of an extra TLS root for KMS (kmssim's ca.pem)")
	region := fs.String("region", "", "AWS region of KMS (required)")
	kmsEndpoint := fs.String("kms-endpoint", "", "KMS URL; its host is the TLS name, never resolved (default https://kms.REGION.amazonaws.com)")
	kmsDial := fs.String("kms-dial", enclave.DefaultKMSDial, "transport address of the byte pipe to KMS (the parent's forwarder)")
	var kmsKeys stringList
	fs.Var(&kmsKeys, "kms-key-id", "ARN of a KMS key this enclave trusts; repeat for more; the first seals new KEKs (required)")
	kekMaxKeys := fs.Int("kek-max-keys", 0, "start a new KEK after this many keys (default 100000)")
	kekMaxAge := fs.Duration("kek-max-age", 0, "start a new KEK after this age (default 720h)")
	maxKeys := fs.Int("max-keys", 0, "bound of the cache of opened keys (default 4194304)")
	yieldMode := fs.String("yield-cpu", "auto", `"on": after each request, and between the signatures of a batch, the enclave yields its CPU to other processes (for CPUs shared with the parent and clients); "off"; "auto": on with --nsm=sim, off with --nsm=device`)
	batching := fs.Bool("batch-signing", true, "sign concurrent secp256k1 ECDSA requests (digests, Ethereum payloads, Bitcoin ECDSA) in batches (about a third less CPU per signature under load; a lone request is signed at once); false is for measurements")
	measurements := fs.Bool("sim-measurements", false, "simulator builds only: print the PCRs a simulated enclave running this binary reports (nitro-cli JSON) and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *measurements {
		if err := printSimMeasurements(os.Stdout); err != nil {
			fmt.Fprintf(stderr, "enclave: %v\n", err)
			return 1
		}
		return 0
	}
	yield, err := yieldCPU(*yieldMode, *nsmMode)
	if err != nil {
		fmt.Fprintf(stderr, "enclave: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "enclave: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var att enclave.Attester
	var closer io.Closer
	switch *nsmMode {
	case "device":
		var d *nsm.Device
		d, err = nsm.Open()
		att, closer = d, d
	case "sim":
		att, closer, err = newSimulator(sf)
	default:
		err = fmt.Errorf(`--nsm must be "device" or "sim", got %q`, *nsmMode)
	}
	if err != nil {
		fmt.Fprintf(stderr, "enclave: %v\n", err)
		return 1
	}
	defer closer.Close()

	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if sf.kmsCA != "" && *nsmMode != "sim" {
		fmt.Fprintln(stderr, "enclave: --kms-sim-ca is only for the simulator (--nsm=sim)")
		return 2
	}
	roots, err := kmsRoots(sf)
	if err != nil {
		fmt.Fprintf(stderr, "enclave: %v\n", err)
		return 1
	}
	err = enclave.Run(ctx, enclave.Config{
		Listen:      *listen,
		Attester:    att,
		Version:     version,
		Logger:      log,
		Region:      *region,
		KMSEndpoint: *kmsEndpoint,
		KMSDial:     *kmsDial,
		KMSKeys:     kmsKeys,
		KMSRoots:    roots,
		KEKMaxKeys:  *kekMaxKeys,
		KEKMaxAge:   *kekMaxAge,
		MaxKeys:     *maxKeys,
		YieldCPU:    yield,
		NoBatching:  !*batching,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("enclave stopped", "err", err)
		return 1
	}
	return 0
}

// yieldCPU resolves --yield-cpu. "auto" turns it on with the simulator,
// which runs on one host with the parent and its clients, and off with
// /dev/nsm, where the enclave's vCPUs are its own.
func yieldCPU(mode, nsmMode string) (bool, error) {
	switch mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto":
		return nsmMode == "sim", nil
	}
	return false, fmt.Errorf(`--yield-cpu must be "auto", "on" or "off", got %q`, mode)
}
