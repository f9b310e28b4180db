package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/nitrosigner/nitrosigner/verify"
)

// verifyFlags say what attestation to trust: attest --verify and keys
// create|get --verify share them.
type verifyFlags struct {
	verify     *bool
	root       *string
	pcrs       *string
	allowDebug *bool
	maxAge     *time.Duration
}

func addVerifyFlags(fs *flag.FlagSet, verifyUsage string) *verifyFlags {
	return &verifyFlags{
		verify:     fs.Bool("verify", false, verifyUsage),
		root:       fs.String("root", "", "PEM `file` with the root certificate to trust instead of the AWS Nitro root (simulated enclaves only)"),
		pcrs:       fs.String("pcrs", "", "JSON `file` of expected PCR values (needs --verify)"),
		allowDebug: fs.Bool("allow-debug", false, "accept a debug-mode enclave, whose memory the parent can read (needs --verify)"),
		maxAge:     fs.Duration("max-age", verify.DefaultMaxAge, "refuse documents older than `duration` at the verification time; 0 leaves only the 3-hour certificate limit (needs --verify)"),
	}
}

// options checks the flags' combination and builds the verifier's options
// (without a nonce).
func (v *verifyFlags) options(fs *flag.FlagSet, synopsis string) (verify.Options, error) {
	set := setFlags(fs)
	switch {
	case !*v.verify && (set["root"] || set["pcrs"] || set["allow-debug"] || set["max-age"]):
		return verify.Options{}, usagef(synopsis, "--root, --pcrs, --allow-debug and --max-age need --verify")
	case *v.maxAge < 0:
		return verify.Options{}, usagef(synopsis, "--max-age must not be negative")
	}
	opts := verify.Options{AllowDebug: *v.allowDebug, MaxAge: *v.maxAge}
	if *v.maxAge == 0 {
		opts.MaxAge = -1 // verify: no freshness check
	}
	if *v.root != "" {
		roots, err := verify.LoadRoots(*v.root)
		if err != nil {
			return opts, &usageError{msg: fmt.Sprintf("--root: %v", err)}
		}
		opts.Roots = roots
	}
	if *v.pcrs != "" {
		pcrs, err := verify.LoadPCRs(*v.pcrs)
		if err != nil {
			return opts, &usageError{msg: fmt.Sprintf("--pcrs: %v", err)}
		}
		opts.PCRs = pcrs
	}
	return opts, nil
}
