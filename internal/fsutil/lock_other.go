//go:build !unix

package fsutil

// Lock is a no-op where flock(2) is unavailable: holders of one path must
// then not run concurrently.
func Lock(string, bool) (unlock func(), err error) { return func() {}, nil }
