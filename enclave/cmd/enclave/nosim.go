//go:build nosim

package main

import (
	"crypto/x509"
	"errors"
	"io"

	"github.com/nitrosigner/nitrosigner/enclave"
)

// newSimulator is unavailable in production builds: the simulator's code is
// not compiled in.
func newSimulator(simFlags) (enclave.Attester, io.Closer, error) {
	return nil, nil, errors.New("the NSM simulator is not part of this build (-tags nosim); use --nsm=device")
}

// kmsRoots: production builds trust only the public roots compiled in;
// --kms-sim-ca is refused.
func kmsRoots(f simFlags) (*x509.CertPool, error) {
	if f.kmsCA != "" {
		return nil, errors.New("--kms-sim-ca is not available in this build (-tags nosim)")
	}
	return nil, nil
}

// printSimMeasurements: production builds have no simulator.
func printSimMeasurements(io.Writer) error {
	return errors.New("--sim-measurements is not available in this build (-tags nosim)")
}
