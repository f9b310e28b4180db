package sign

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rebuilt public keys come from the cache exactly as rebuilding gives
// them, for more keys than the cache holds (so entries are evicted and
// rebuilt again), on both curves that compress their points.
func TestUnpackPublicCachedMatchesRebuilt(t *testing.T) {
	for _, sc := range []Scheme{Secp256k1{}, P256{}} {
		t.Run(sc.Name(), func(t *testing.T) {
			const n = pointCacheSize + pointCacheSize/4 // more than fit: entries are evicted
			packed := make([]Packed, n)
			pubs := make([][]byte, n)
			for i := range packed {
				priv, pub, err := sc.Generate()
				require.NoError(t, err)
				require.NoError(t, sc.Pack(priv, pub, &packed[i]))
				pubs[i] = pub
			}
			for round := range 2 {
				for i := range packed {
					got, err := sc.UnpackPublic(&packed[i])
					require.NoError(t, err)
					require.Equal(t, pubs[i], got, "round %d key %d", round, i)
					again, err := sc.UnpackPublic(&packed[i])
					require.NoError(t, err)
					require.Equal(t, pubs[i], again, "round %d key %d, cached", round, i)
				}
			}
		})
	}
}

func TestPointCache(t *testing.T) {
	var c pointCache
	rebuilds := 0
	point := func(b byte) func() ([]byte, error) {
		return func() ([]byte, error) {
			rebuilds++
			p := make([]byte, 65)
			p[0], p[64] = 4, b
			return p, nil
		}
	}
	// Two points with the same low X bytes share an entry.
	var a, b [33]byte
	a[0], a[1], a[32] = 2, 0xaa, 7
	b[0], b[1], b[32] = 3, 0xbb, 7

	got, err := c.get(&a, point(1))
	require.NoError(t, err)
	assert.Equal(t, byte(1), got[64])
	got[64] = 99 // the caller's copy
	got, err = c.get(&a, point(1))
	require.NoError(t, err)
	assert.Equal(t, byte(1), got[64], "a hit is a fresh copy")
	assert.Equal(t, 1, rebuilds, "the second get is a hit")

	got, err = c.get(&b, point(2))
	require.NoError(t, err)
	assert.Equal(t, byte(2), got[64], "another point never gets a's entry")
	_, err = c.get(&a, point(1))
	require.NoError(t, err)
	assert.Equal(t, 3, rebuilds, "b evicted a")

	// Failures are not cached.
	var bad [33]byte
	bad[0] = 2
	fails := 0
	for range 2 {
		_, err = c.get(&bad, func() ([]byte, error) { fails++; return nil, errors.New("not on the curve") })
		require.Error(t, err)
	}
	assert.Equal(t, 2, fails)
}

// A point that is not on the curve fails every time, through the cache.
func TestUnpackPublicRefusesBadPoint(t *testing.T) {
	for _, sc := range []Scheme{Secp256k1{}, P256{}} {
		var p Packed
		p.Pub[0] = 2
		for i := 1; i < len(p.Pub); i++ {
			p.Pub[i] = 0xff // x = 2^256 - 1: beyond both curves' fields
		}
		for range 2 {
			_, err := sc.UnpackPublic(&p)
			require.ErrorIs(t, err, ErrInvalidKey, sc.Name())
		}
	}
}

func TestUnpackPublicConcurrent(t *testing.T) {
	sc := Secp256k1{}
	var keys [4]Packed
	var pubs [4][]byte
	for i := range keys {
		priv, pub, err := sc.Generate()
		require.NoError(t, err)
		require.NoError(t, sc.Pack(priv, pub, &keys[i]))
		pubs[i] = pub
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(keys)
				got, err := sc.UnpackPublic(&keys[k])
				if err == nil && string(got) != string(pubs[k]) {
					err = errors.New("wrong point")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkUnpackPublic(b *testing.B) {
	sc := Secp256k1{}
	priv, pub, err := sc.Generate()
	require.NoError(b, err)
	var p Packed
	require.NoError(b, sc.Pack(priv, pub, &p))
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := sc.UnpackPublic(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rebuilt", func(b *testing.B) {
		for b.Loop() {
			if _, err := unpackSecp256k1(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
