//go:build nosim

package main

import (
	"errors"
	"io"

	"github.com/nitrosigner/nitrosigner/enclave"
)

// newSimulator is unavailable in production builds: the simulator's code is
// not compiled in.
func newSimulator(simFlags) (enclave.Attester, io.Closer, error) {
	return nil, nil, errors.New("the NSM simulator is not part of this build (-tags nosim); use --nsm=device")
}
