package store_test

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/parent/internal/store"
)

func newDir(t testing.TB) *store.Dir {
	t.Helper()
	d, err := store.NewDir(filepath.Join(t.TempDir(), "blobs"))
	require.NoError(t, err)
	return d
}

func TestDirConformance(t *testing.T) {
	testStore(t, func(t *testing.T) store.Store { return newDir(t) })
}

func TestDirPermissions(t *testing.T) {
	d := newDir(t)
	_, err := d.Put(context.Background(), "keys/sub/key_1", []byte("x"), store.Cond{})
	require.NoError(t, err)
	for _, p := range []string{"", "keys", "keys/sub"} {
		fi, err := os.Stat(filepath.Join(d.Root(), p))
		require.NoError(t, err)
		assert.Equal(t, fs.ModeDir|0o700, fi.Mode(), "directory %q", p)
	}
	for _, p := range []string{"keys/sub/key_1", ".lock"} {
		fi, err := os.Stat(filepath.Join(d.Root(), p))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode(), "file %q", p)
	}
}

// TestDirLeftovers checks that what a crash can leave behind (temporary
// files from an interrupted Put, foreign files) never shows up as a blob.
func TestDirLeftovers(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	_, err := d.Put(ctx, "keys/key_1", []byte("good"), store.Cond{})
	require.NoError(t, err)
	for _, p := range []string{"keys/.tmp-123456", ".tmp-99", "keys/Key_UPPER", "keys/.hidden"} {
		require.NoError(t, os.WriteFile(filepath.Join(d.Root(), p), []byte("partial"), 0o600))
	}
	require.NoError(t, os.Symlink(filepath.Join(d.Root(), "keys/key_1"), filepath.Join(d.Root(), "keys/key_link")))

	names, err := d.List(ctx, "", "", 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"keys/key_1"}, names)

	_, _, err = d.Get(ctx, "keys/.tmp-123456")
	require.ErrorIs(t, err, store.ErrInvalidName)
	// Put cleans up its own temporary files.
	_, err = d.Put(ctx, "keys/key_1", []byte("x"), store.Cond{IfAbsent: true})
	require.ErrorIs(t, err, store.ErrExists)
	ents, err := os.ReadDir(filepath.Join(d.Root(), "keys"))
	require.NoError(t, err)
	assert.Len(t, ents, 5, "only the planted files and the blob")
}

func TestDirNameClash(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	_, err := d.Put(ctx, "a", []byte("file"), store.Cond{})
	require.NoError(t, err)
	_, err = d.Put(ctx, "a/b", []byte("x"), store.Cond{})
	require.ErrorIs(t, err, store.ErrInvalidName)
	assert.ErrorContains(t, err, "both a blob and a directory")

	_, err = d.Put(ctx, "c/d", []byte("x"), store.Cond{})
	require.NoError(t, err)
	for _, cond := range []store.Cond{{}, {IfAbsent: true}} {
		_, err = d.Put(ctx, "c", []byte("x"), cond)
		require.ErrorIs(t, err, store.ErrInvalidName, "%+v", cond)
	}
	_, err = d.Put(ctx, "c", []byte("x"), store.Cond{IfMatch: "abc"})
	require.ErrorIs(t, err, store.ErrNotFound)
	_, _, err = d.Get(ctx, "c")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, d.Delete(ctx, "c"), store.ErrNotFound)
	_, _, err = d.Get(ctx, "a/b")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// TestDirTwoInstances shares one directory between two Dir values, as two
// processes would: only the flock serialises them.
func TestDirTwoInstances(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "blobs")
	a, err := store.NewDir(root)
	require.NoError(t, err)
	b, err := store.NewDir(root)
	require.NoError(t, err)
	_, err = a.Put(ctx, "keks/counter", []byte("0"), store.Cond{})
	require.NoError(t, err)

	const workers, incs = 8, 10
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		s := store.Store(a)
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() { errs[i] = increment(ctx, s, "keks/counter", incs) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	data, _, err := b.Get(ctx, "keks/counter")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(workers*incs), string(data))
}

// TestDirListRandom compares Dir.List with a sorted, filtered slice on a
// random tree, for random prefixes, start names and limits.
func TestDirListRandom(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab0-._/"
	randName := func(maxLen int) string {
		b := make([]byte, 1+rng.IntN(maxLen))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	var names []string
	for range 300 {
		n := randName(7)
		if store.ValidName(n) != nil {
			continue
		}
		// Written directly rather than with Put (whose fsyncs are slow);
		// a failure is a duplicate or a file/directory clash.
		p := filepath.Join(d.Root(), n)
		if os.MkdirAll(filepath.Dir(p), 0o700) != nil {
			continue
		}
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			f.Close()
			names = append(names, n)
		}
	}
	slices.Sort(names)
	require.Greater(t, len(names), 50)

	for range 500 {
		prefix, after, limit := "", "", 1+rng.IntN(20)
		if rng.IntN(2) == 0 {
			prefix = randName(3)
		}
		if rng.IntN(2) == 0 {
			after = randName(6)
		}
		got, err := d.List(ctx, prefix, after, limit)
		if errors.Is(err, store.ErrInvalidName) {
			continue // a prefix no valid name can have
		}
		require.NoError(t, err)
		var want []string
		for _, n := range names {
			if strings.HasPrefix(n, prefix) && n > after && len(want) < limit {
				want = append(want, n)
			}
		}
		require.Equal(t, want, got, "List(%q, %q, %d)", prefix, after, limit)
	}
}

func TestDirCorruptOversize(t *testing.T) {
	d := newDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(d.Root(), "big"), make([]byte, store.MaxBlobSize+1), 0o600))
	_, _, err := d.Get(context.Background(), "big")
	require.ErrorIs(t, err, store.ErrTooLarge)
}

func TestNewDirErrors(t *testing.T) {
	_, err := store.NewDir("")
	require.ErrorContains(t, err, "empty")
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = store.NewDir(file)
	require.Error(t, err)
	_, err = store.NewDir(filepath.Join(file, "sub"))
	require.Error(t, err)
}

func BenchmarkDir(b *testing.B) {
	benchStore(b, newDir(b))
}

var benchSeq atomic.Int64

// benchStore measures Put (unconditional, put-if-absent, CAS) and Get of a
// 300-byte blob, about the size of a sealed key.
func benchStore(b *testing.B, s store.Store) {
	ctx := context.Background()
	data := make([]byte, 300)
	b.Run("Put", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Put(ctx, "keys/key_bench", data, store.Cond{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutIfAbsent", func(b *testing.B) {
		for b.Loop() {
			name := "keys/key_new" + strconv.FormatInt(benchSeq.Add(1), 10)
			if _, err := s.Put(ctx, name, data, store.Cond{IfAbsent: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutIfMatch", func(b *testing.B) {
		etag, err := s.Put(ctx, "keys/key_cas", data, store.Cond{})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			data[0]++
			if etag, err = s.Put(ctx, "keys/key_cas", data, store.Cond{IfMatch: etag}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := s.Get(ctx, "keys/key_bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
