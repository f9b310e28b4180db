//go:build !nosim && !unix

package kmssim

// lockDir is a no-op where flock(2) is unavailable: two simulators must then
// not be started over the same state directory.
func lockDir(string) (unlock func(), err error) { return func() {}, nil }
