//go:build unix

package fsutil

import (
	"errors"
	"os"
	"syscall"
)

// Lock takes an exclusive flock(2) on path, creating the file if needed,
// and returns the function that releases it. With wait false it fails with
// [ErrLocked] instead of waiting. flock locks belong to the open file
// description, so a second Lock in the same process is excluded too.
func Lock(path string, wait bool) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, ErrLocked
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
