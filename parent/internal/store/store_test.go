package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/parent/internal/store"
)

// testStore runs the conformance suite: every Store implementation must
// pass it. newStore returns a fresh, empty store for each subtest.
func testStore(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("PutGet", func(t *testing.T) {
		s := newStore(t)
		e1, err := s.Put(ctx, "keys/key_1", []byte("one"), store.Cond{})
		require.NoError(t, err)
		require.NotEmpty(t, e1)
		data, etag, err := s.Get(ctx, "keys/key_1")
		require.NoError(t, err)
		assert.Equal(t, []byte("one"), data)
		assert.Equal(t, e1, etag)

		e2, err := s.Put(ctx, "keys/key_1", []byte("two"), store.Cond{})
		require.NoError(t, err)
		assert.NotEqual(t, e1, e2, "new content, new etag")
		data, etag, err = s.Get(ctx, "keys/key_1")
		require.NoError(t, err)
		assert.Equal(t, []byte("two"), data)
		assert.Equal(t, e2, etag)
	})

	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t)
		_, _, err := s.Get(ctx, "keys/key_missing")
		require.ErrorIs(t, err, store.ErrNotFound)
		assert.Contains(t, err.Error(), "keys/key_missing")
	})

	t.Run("EmptyAndMaxSize", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Put(ctx, "keys/empty", nil, store.Cond{IfAbsent: true})
		require.NoError(t, err)
		data, _, err := s.Get(ctx, "keys/empty")
		require.NoError(t, err)
		assert.Empty(t, data)

		big := bytes.Repeat([]byte{0xa5}, store.MaxBlobSize)
		_, err = s.Put(ctx, "keys/big", big, store.Cond{})
		require.NoError(t, err)
		data, _, err = s.Get(ctx, "keys/big")
		require.NoError(t, err)
		assert.True(t, bytes.Equal(big, data), "max-size blob round-trips")

		_, err = s.Put(ctx, "keys/huge", append(big, 0), store.Cond{})
		require.ErrorIs(t, err, store.ErrTooLarge)
		_, _, err = s.Get(ctx, "keys/huge")
		require.ErrorIs(t, err, store.ErrNotFound, "a refused blob is not written")
	})

	t.Run("IfAbsent", func(t *testing.T) {
		s := newStore(t)
		e1, err := s.Put(ctx, "keys/key_1", []byte("first"), store.Cond{IfAbsent: true})
		require.NoError(t, err)
		_, err = s.Put(ctx, "keys/key_1", []byte("second"), store.Cond{IfAbsent: true})
		require.ErrorIs(t, err, store.ErrExists)
		data, etag, err := s.Get(ctx, "keys/key_1")
		require.NoError(t, err)
		assert.Equal(t, []byte("first"), data)
		assert.Equal(t, e1, etag)
	})

	t.Run("IfMatch", func(t *testing.T) {
		s := newStore(t)
		e1, err := s.Put(ctx, "keks/kek_1", []byte("v1"), store.Cond{})
		require.NoError(t, err)
		e2, err := s.Put(ctx, "keks/kek_1", []byte("v2"), store.Cond{IfMatch: e1})
		require.NoError(t, err)

		_, err = s.Put(ctx, "keks/kek_1", []byte("stale"), store.Cond{IfMatch: e1})
		require.ErrorIs(t, err, store.ErrConflict)
		assert.NotErrorIs(t, err, store.ErrNotFound)
		data, etag, err := s.Get(ctx, "keks/kek_1")
		require.NoError(t, err)
		assert.Equal(t, []byte("v2"), data, "a lost CAS changes nothing")
		assert.Equal(t, e2, etag)

		_, err = s.Put(ctx, "keks/kek_absent", []byte("x"), store.Cond{IfMatch: e2})
		require.ErrorIs(t, err, store.ErrConflict)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, _, err = s.Get(ctx, "keks/kek_absent")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("BothConditions", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Put(ctx, "keys/key_1", []byte("x"), store.Cond{IfAbsent: true, IfMatch: "x"})
		require.ErrorContains(t, err, "mutually exclusive")
		_, _, err = s.Get(ctx, "keys/key_1")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		require.ErrorIs(t, s.Delete(ctx, "keys/key_1"), store.ErrNotFound)
		_, err := s.Put(ctx, "keys/key_1", []byte("v1"), store.Cond{})
		require.NoError(t, err)
		_, err = s.Put(ctx, "keys/key_1", []byte("v2"), store.Cond{})
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, "keys/key_1"))
		_, _, err = s.Get(ctx, "keys/key_1")
		require.ErrorIs(t, err, store.ErrNotFound)
		require.ErrorIs(t, s.Delete(ctx, "keys/key_1"), store.ErrNotFound)
		names, err := s.List(ctx, "", "", 10)
		require.NoError(t, err)
		assert.Empty(t, names)
		_, err = s.Put(ctx, "keys/key_1", []byte("v3"), store.Cond{IfAbsent: true})
		require.NoError(t, err, "a deleted name can be created again")
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		var keys []string
		for i := range 23 {
			keys = append(keys, fmt.Sprintf("keys/key_%02d", i))
		}
		// Names whose order differs from a plain depth-first walk. (No
		// name is a directory of another: a dir store, like versitygw's
		// posix backend, cannot hold "a/b" and "a/b/c".)
		odd := []string{"a-c", "a.b", "a/b", "a/b-c", "a/c/d", "a0", "keys-x", "keysa/x"}
		keks := []string{"keks/kek_1", "keks/kek_2"}
		all := slices.Concat(keys, odd, keks)
		for _, n := range all {
			_, err := s.Put(ctx, n, []byte(n), store.Cond{IfAbsent: true})
			require.NoError(t, err, n)
		}
		slices.Sort(all)

		tests := []struct {
			name, prefix, after string
			limit               int
			want                []string
		}{
			{name: "all", limit: 100, want: all},
			{name: "keys dir", prefix: "keys/", limit: 100, want: keys},
			{name: "keys prefix", prefix: "keys", limit: 100, want: filter(all, "keys")},
			{name: "partial segment", prefix: "keys/key_1", limit: 100, want: filter(keys, "keys/key_1")},
			{name: "after", prefix: "keys/", after: "keys/key_10", limit: 5, want: keys[11:16]},
			{name: "after non-name", prefix: "keys/", after: "keys/key_105", limit: 2, want: keys[11:13]},
			{name: "after before prefix", prefix: "keks/", after: "a", limit: 10, want: keks},
			{name: "after beyond prefix", prefix: "keks/", after: "keks0", limit: 10, want: nil},
			{name: "after dir boundary", after: "a/", limit: 100, want: all[slices.Index(all, "a/b"):]},
			{name: "limit", prefix: "", after: "", limit: 3, want: all[:3]},
			{name: "no match", prefix: "nothing/", limit: 10, want: nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.List(ctx, tt.prefix, tt.after, tt.limit)
				require.NoError(t, err)
				assert.Equal(t, tt.want, nilIfEmpty(got))
			})
		}

		t.Run("paging", func(t *testing.T) {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, 20, "paging does not end")
				page, err := s.List(ctx, "", after, 4)
				require.NoError(t, err)
				got = append(got, page...)
				if len(page) < 4 {
					break
				}
				after = page[len(page)-1]
			}
			assert.Equal(t, all, got)
		})

		t.Run("bad limit", func(t *testing.T) {
			_, err := s.List(ctx, "", "", 0)
			require.ErrorContains(t, err, "limit")
		})
	})

	t.Run("InvalidNames", func(t *testing.T) {
		s := newStore(t)
		for _, name := range invalidNames {
			t.Run(strconv.Quote(name), func(t *testing.T) {
				_, err := s.Put(ctx, name, []byte("x"), store.Cond{})
				require.ErrorIs(t, err, store.ErrInvalidName)
				_, err = s.Put(ctx, name, []byte("x"), store.Cond{IfAbsent: true})
				require.ErrorIs(t, err, store.ErrInvalidName)
				_, _, err = s.Get(ctx, name)
				require.ErrorIs(t, err, store.ErrInvalidName)
				require.ErrorIs(t, s.Delete(ctx, name), store.ErrInvalidName)
			})
		}
		for _, prefix := range []string{"/keys", "../", "keys//", "keys/.tmp", "KEYS/", strings.Repeat("a", store.MaxNameLen+1)} {
			_, err := s.List(ctx, prefix, "", 10)
			require.ErrorIs(t, err, store.ErrInvalidName, "prefix %q", prefix)
		}
		names, err := s.List(ctx, "", "", 10)
		require.NoError(t, err)
		assert.Empty(t, names, "nothing was written")
	})

	t.Run("ConcurrentPutIfAbsent", func(t *testing.T) {
		s := newStore(t)
		const n = 16
		var (
			wg   sync.WaitGroup
			errs [n]error
		)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Put(ctx, "keys/key_race", []byte(strconv.Itoa(i)), store.Cond{IfAbsent: true})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				require.Equal(t, -1, winner, "writers %d and %d both won", winner, i)
				winner = i
				continue
			}
			require.ErrorIs(t, err, store.ErrExists, "writer %d", i)
		}
		require.NotEqual(t, -1, winner, "nobody won")
		data, _, err := s.Get(ctx, "keys/key_race")
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(winner), string(data), "the winner's blob is stored")
	})

	t.Run("ConcurrentCAS", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Put(ctx, "keks/counter", []byte("0"), store.Cond{})
		require.NoError(t, err)
		const workers, incs = 6, 5
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for range workers {
			wg.Go(func() { errc <- increment(ctx, s, "keks/counter", incs) })
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			require.NoError(t, err)
		}
		data, _, err := s.Get(ctx, "keks/counter")
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(workers*incs), string(data), "no update was lost")
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Put(cctx, "keys/key_1", []byte("x"), store.Cond{})
		require.ErrorIs(t, err, context.Canceled)
		_, _, err = s.Get(cctx, "keys/key_1")
		require.ErrorIs(t, err, context.Canceled)
		_, _, err = s.Get(ctx, "keys/key_1")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// increment adds 1 to the decimal counter in name n times with
// compare-and-swap, retrying lost races.
func increment(ctx context.Context, s store.Store, name string, n int) error {
	for done := 0; done < n; {
		data, etag, err := s.Get(ctx, name)
		if err != nil {
			return err
		}
		v, err := strconv.Atoi(string(data))
		if err != nil {
			return err
		}
		_, err = s.Put(ctx, name, []byte(strconv.Itoa(v+1)), store.Cond{IfMatch: etag})
		switch {
		case err == nil:
			done++
		case !errors.Is(err, store.ErrConflict):
			return err
		}
	}
	return nil
}

func filter(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

var validNames = []string{
	"keys/key_0123456789abcdef0123456789abcdef",
	"keks/kek_0123456789abcdef0123456789abcdef",
	"a",
	"a.b-c_d/e.f",
	"0/1/2/3",
	"x..y",
	strings.Repeat("a", store.MaxNameLen),
}

var invalidNames = []string{
	"",
	"/keys/key_1",
	"keys/key_1/",
	"keys//key_1",
	"../keys/key_1",
	"keys/../key_1",
	"..",
	".",
	"./a",
	"keys/.tmp-123",
	".lock",
	"keys/Key_1",
	"keys/key 1",
	"keys\\key_1",
	"keys/key_1\x00",
	"keys/ключ",
	"keys/key%2f1",
	strings.Repeat("a", store.MaxNameLen+1),
}

func TestValidName(t *testing.T) {
	for _, name := range validNames {
		assert.NoError(t, store.ValidName(name), name)
	}
	for _, name := range invalidNames {
		err := store.ValidName(name)
		require.ErrorIs(t, err, store.ErrInvalidName, "%q", name)
	}
}

func FuzzValidName(f *testing.F) {
	for _, n := range slices.Concat(validNames, invalidNames) {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if err := store.ValidName(name); err != nil {
			require.ErrorIs(t, err, store.ErrInvalidName)
			return
		}
		// A valid name stays inside the store's root and means the same on
		// every backend: clean, relative, no hidden segments.
		require.Equal(t, name, filepath.ToSlash(filepath.Clean(name)))
		require.False(t, filepath.IsAbs(name))
		joined := filepath.Join("/root", name)
		require.True(t, strings.HasPrefix(joined, "/root/"), "%q escapes the root", name)
		for seg := range strings.SplitSeq(name, "/") {
			require.NotEmpty(t, seg)
			require.NotEqual(t, byte('.'), seg[0])
		}
	})
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		url, wantMsg string
	}{
		{"", `unknown scheme ""`},
		{"/var/lib/blobs", `unknown scheme ""`},
		{"ftp://host/x", `unknown scheme "ftp"`},
		{"dir://relative/path", "three slashes"},
		{"dir:relative", "three slashes"},
		{"dir:///tmp/x?sync=0", "no query"},
		{"s3:///prefix", "missing bucket"},
		{"s3://user@bucket/p", "no user info"},
		{"s3://bucket/p?region=a&region=b", "given 2 times"},
		{"s3://bucket/p?colour=red", `unknown query parameter "colour"`},
		{"s3://bucket/p?path-style=maybe", "not a boolean"},
		{"s3://bucket/p?region=r&sse=des", `unknown SSE "des"`},
		{"s3://bucket/p?region=r&sse-kms-key-id=arn", "needs SSE aws:kms"},
		{"s3://bucket/p?region=r&endpoint=localhost:9000", "not an http(s) URL"},
		{"s3://bucket/Bad Prefix?region=r", "invalid blob name"},
		{"s3://bucket/../p?region=r", "invalid blob name"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			s, err := store.Open(context.Background(), tt.url)
			require.ErrorContains(t, err, tt.wantMsg)
			assert.Nil(t, s)
		})
	}
}

func TestOpenDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "blobs")
	s, err := store.Open(context.Background(), "dir://"+root)
	require.NoError(t, err)
	require.IsType(t, (*store.Dir)(nil), s)
	assert.Equal(t, root, s.(*store.Dir).Root())
	_, err = s.Put(context.Background(), "keys/key_1", []byte("x"), store.Cond{})
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(root, "keys", "key_1"))
}
