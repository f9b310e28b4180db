package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lockFile is the name, in the store's root, of the file [Dir] flocks around
// every write so that writers in other processes are serialised too. Names
// starting with "." are never blob names.
const lockFile = ".lock"

// tempPattern names the temporary files Put writes before renaming or
// linking them into place. A leftover one (after a crash) is never listed or
// read as a blob and may be removed while no writer runs.
const tempPattern = ".tmp-*"

// Dir is a [Store] in a local directory. Blob "keys/key_1" is the file
// ROOT/keys/key_1. Directories are created 0700 and files 0600.
//
// Every Put writes a temporary file in the blob's directory, fsyncs it, moves
// it into place with rename(2) (or link(2) for put-if-absent, which fails if
// the name exists, so exactly one of any number of racing writers wins) and
// fsyncs the directory before returning, so an acknowledged write survives a
// crash and a crash never leaves a partial blob. The check-and-replace of a
// compare-and-swap, every replace and every Delete run under a lock held by
// the Dir and by flock(2) on ROOT/.lock, so they are atomic against other
// goroutines and against other processes that open the same directory.
//
// The directory must be on a local file system that supports hard links,
// flock(2) and fsync of directories (ext4, xfs; not NFS or SMB).
//
// ETags are the hex SHA-256 of the content. List reads every entry of each
// directory it visits, so a listing costs time proportional to the number
// of blobs under the prefix's directory; use [S3] beyond about a hundred
// thousand blobs. The directory layout cannot hold both a blob "a" and a
// blob "a/b": the second Put fails with [ErrInvalidName].
type Dir struct {
	root string
	mu   sync.Mutex // serialises this process's writers before they flock
}

var _ Store = (*Dir)(nil)

// NewDir opens the store rooted at path, creating the directory (mode 0700)
// if it does not exist. An existing directory keeps its mode.
func NewDir(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("store: directory path is empty")
	}
	root, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", root, err)
	}
	d := &Dir{root: root}
	// Take and release the lock once, so that an unwritable directory is
	// reported now rather than on the first Put.
	unlock, err := d.lock()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// A process that died in the middle of a Put left its temporary file,
	// possibly a second link to a sealed blob that a later Delete would not
	// shred. Files younger than staleTemp may be another process's Put in
	// progress.
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if ok, _ := filepath.Match(tempPattern, e.Name()); !ok {
			return nil
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	unlock()
	if err != nil {
		return nil, fmt.Errorf("store: removing leftover temporary files: %w", err)
	}
	return d, nil
}

// staleTemp is the age past which a temporary file is a dead Put's.
const staleTemp = time.Minute

// Root returns the store's absolute root directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(name string) string {
	return filepath.Join(d.root, filepath.FromSlash(name))
}

// Get implements [Store.Get].
func (d *Dir) Get(ctx context.Context, name string) ([]byte, string, error) {
	if err := ValidName(name); err != nil {
		return nil, "", fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("get %s: %w", name, err)
	}
	data, err := readBlob(d.path(name))
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", name, err)
	}
	return data, etagOf(data), nil
}

// readBlob reads the regular file at path; a missing file (or a directory)
// is ErrNotFound.
func readBlob(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if notExist(err) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrNotFound
	}
	if fi.Size() > MaxBlobSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxBlobSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBlobSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBlobSize)
	}
	return data, nil
}

// Put implements [Store.Put].
func (d *Dir) Put(ctx context.Context, name string, data []byte, cond Cond) (string, error) {
	if err := checkPut(name, data, cond); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("put %s: %w", name, err)
	}
	path := d.path(name)
	dir := filepath.Dir(path)
	if err := d.mkdirs(dir); err != nil {
		return "", fmt.Errorf("put %s: %w", name, err)
	}
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return "", fmt.Errorf("put %s: %w", name, err)
	}
	// After a rename this fails harmlessly; after a link or an error it
	// removes the temporary file. Its removal need not be durable.
	defer os.Remove(tmp)

	if err := d.commit(name, path, tmp, cond); err != nil {
		return "", fmt.Errorf("put %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("put %s: %w", name, err)
	}
	return etagOf(data), nil
}

// commit moves tmp to path under the write lock, honouring cond.
func (d *Dir) commit(name, path, tmp string, cond Cond) error {
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if cond.IfAbsent {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Lstat(path); serr == nil && fi.IsDir() {
				return nameClash(name)
			}
			return ErrExists
		}
		return err
	}
	if cond.IfMatch != "" {
		cur, err := readBlob(path)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("%w: %w", ErrConflict, ErrNotFound)
		case err != nil:
			return fmt.Errorf("read current version: %w", err)
		case etagOf(cur) != cond.IfMatch:
			return ErrConflict
		}
	}
	err = os.Rename(tmp, path)
	if err != nil {
		if fi, serr := os.Lstat(path); serr == nil && fi.IsDir() {
			return nameClash(name)
		}
	}
	return err
}

// Delete implements [Store.Delete].
func (d *Dir) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	path := d.path(name)
	if err := d.remove(path); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (d *Dir) remove(path string) error {
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	fi, err := os.Lstat(path)
	if err != nil {
		if notExist(err) {
			return ErrNotFound
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return ErrNotFound
	}
	return os.Remove(path)
}

// List implements [Store.List]. It visits directories in an order that
// yields names already sorted, skips subtrees that sort entirely at or
// before after, and stops once it has limit names.
func (d *Dir) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := checkList(prefix, after, limit); err != nil {
		return nil, err
	}
	base := prefix[:strings.LastIndexByte(prefix, '/')+1]
	var out []string
	if err := d.walk(ctx, base, prefix, after, limit, &out); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return out, nil
}

// walk appends to out, in order, the names under directory rel (a name
// prefix, "" or ending in "/") that start with prefix and sort after after.
func (d *Dir) walk(ctx context.Context, rel, prefix, after string, limit int, out *[]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(d.path(rel))
	if err != nil {
		if notExist(err) {
			return nil
		}
		return err
	}
	// A directory's key ends in "/": every name below it starts with the
	// key, and no sibling sorts between two of them, so sorting siblings by
	// key and recursing yields names in lexical order.
	type entry struct {
		key string
		dir bool
	}
	entries := make([]entry, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if ValidName(n) != nil { // temp and lock files, anything foreign
			continue
		}
		switch {
		case e.IsDir():
			entries = append(entries, entry{rel + n + "/", true})
		case e.Type().IsRegular():
			entries = append(entries, entry{rel + n, false})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range entries {
		if len(*out) >= limit {
			return nil
		}
		if !e.dir {
			if strings.HasPrefix(e.key, prefix) && e.key > after {
				*out = append(*out, e.key)
			}
			continue
		}
		if !strings.HasPrefix(e.key, prefix) && !strings.HasPrefix(prefix, e.key) {
			continue
		}
		if after > e.key && !strings.HasPrefix(after, e.key) {
			continue // every name below sorts before after
		}
		if err := d.walk(ctx, e.key, prefix, after, limit, out); err != nil {
			return err
		}
	}
	return nil
}

// lock takes the store's write lock: the in-process mutex, then an
// exclusive flock on the lock file. The returned function releases both.
func (d *Dir) lock() (unlock func(), err error) {
	d.mu.Lock()
	f, err := os.OpenFile(filepath.Join(d.root, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		d.mu.Unlock()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		f.Close() // releases the flock
		d.mu.Unlock()
	}, nil
}

// mkdirs creates dir and any missing parents below the root (mode 0700),
// fsyncing each parent in which it created an entry.
func (d *Dir) mkdirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(d.root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("directory %s is not below the store root", dir)
	}
	p := d.root
	for seg := range strings.SplitSeq(rel, string(filepath.Separator)) {
		parent := p
		p = filepath.Join(p, seg)
		err := os.Mkdir(p, 0o700)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			if fi, serr := os.Stat(p); serr != nil || !fi.IsDir() {
				n, _ := filepath.Rel(d.root, p)
				return nameClash(filepath.ToSlash(n))
			}
		default:
			return err
		}
	}
	return nil
}

// writeTemp writes data to a new temporary file in dir, fsyncs and closes
// it, and returns its path.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tempPattern) // mode 0600
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed
// in it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func etagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// notExist reports whether err means a path (or one of its parents) does not
// exist as the kind of file expected.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func nameClash(name string) error {
	return fmt.Errorf("%w: %q is both a blob and a directory of blobs, which a dir store cannot hold", ErrInvalidName, name)
}
