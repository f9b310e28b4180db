//go:build !nosim && !unix

package nsmsim

// lockDir is a no-op where flock(2) is unavailable: simulators sharing a
// state directory must then not be started concurrently.
func lockDir(string) (unlock func(), err error) { return func() {}, nil }
