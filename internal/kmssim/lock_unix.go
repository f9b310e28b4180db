//go:build !nosim && unix

package kmssim

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive, non-blocking flock(2) on path, creating it if
// needed, and returns the function that releases it. It fails with
// [ErrStateDirInUse] when another holder has the lock. flock locks belong to
// the open file description, so a second Server in the same process is
// excluded too.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, ErrStateDirInUse
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
