// Package fsutil holds the small file-system routines the simulators share:
// crash-safe file replacement and exclusive locks on state directories.
package fsutil

import (
	"errors"
	"os"
	"path/filepath"
)

// ErrLocked means another holder has the lock (non-blocking [Lock] only).
var ErrLocked = errors.New("locked by another process or simulator")

// WriteFileAtomic writes data to a temporary file in the same directory,
// syncs it, renames it over path and syncs the directory, so that readers
// never see a partial file and the update survives a crash.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
