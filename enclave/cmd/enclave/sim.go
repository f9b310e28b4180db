//go:build !nosim

package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"

	"github.com/nitrosigner/nitrosigner/enclave"
	"github.com/nitrosigner/nitrosigner/enclave/internal/kms"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// nsmDevicePath is the real NSM's device node; the simulator refuses to
// start where it exists. A variable so that tests can point it elsewhere.
var nsmDevicePath = nsmsim.DefaultDevicePath

// newSimulator starts the NSM simulator with PCR0-2 measured from this very
// binary, so that a rebuilt enclave gets new PCRs as on AWS.
func newSimulator(f simFlags) (enclave.Attester, io.Closer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("simulator: find own binary: %w", err)
	}
	image, err := os.ReadFile(exe)
	if err != nil {
		return nil, nil, fmt.Errorf("simulator: read own binary: %w", err)
	}
	sim, err := nsmsim.New(nsmsim.Config{
		Image:      image,
		Debug:      f.debug,
		InstanceID: f.instanceID,
		RoleARN:    f.roleARN,
		StateDir:   f.stateDir,
		DevicePath: nsmDevicePath,
	})
	if err != nil {
		return nil, nil, err
	}
	// The production adapter runs over the simulated device.
	d := enclave.NewNSMAttester(sim)
	return d, d, nil
}

// kmsRoots returns nil (the public roots) unless --kms-sim-ca names
// kmssim's CA, which is then trusted in addition. Production builds
// (-tags nosim) have no such flag effect: see nosim.go.
func kmsRoots(f simFlags) (*x509.CertPool, error) {
	if f.kmsCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.kmsCA)
	if err != nil {
		return nil, fmt.Errorf("--kms-sim-ca: %w", err)
	}
	pool, err := kms.PublicRoots()
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--kms-sim-ca: %s holds no PEM certificate", f.kmsCA)
	}
	return pool, nil
}

// printSimMeasurements writes the PCRs a simulated enclave running this
// binary reports, in nitro-cli's measurements format, so that a local
// client can verify attestations against expected values the way it would
// against `nitro-cli build-enclave` output.
func printSimMeasurements(w io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	image, err := os.ReadFile(exe)
	if err != nil {
		return fmt.Errorf("read own binary: %w", err)
	}
	p0, p1, p2 := nsmsim.MeasureImage(image)
	_, err = fmt.Fprintf(w, `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "%x", "PCR1": "%x", "PCR2": "%x"}}`+"\n", p0, p1, p2)
	return err
}
