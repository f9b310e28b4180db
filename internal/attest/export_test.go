package attest

import "github.com/hf/nitrite"

// ErrPanic is wrapped by errors made from a recovered panic.
var ErrPanic = errPanic

// SetNitriteVerify replaces the call into hf/nitrite until the returned
// function is called. Tests using it must not run in parallel.
func SetNitriteVerify(f func([]byte, nitrite.VerifyOptions) (*nitrite.Result, error)) (restore func()) {
	old := nitriteVerify
	nitriteVerify = f
	return func() { nitriteVerify = old }
}
