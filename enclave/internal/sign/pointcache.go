package sign

import "sync"

// pointCacheSize is how many rebuilt public keys a pointCache keeps (a
// power of two). An entry is about 100 bytes, so a cache is about 200 KiB:
// enough for the keys a hot wallet signs with, small beside a keyring of
// a million keys.
const pointCacheSize = 2048

// pointCache remembers the uncompressed form of recently rebuilt
// compressed public keys, so that signing requests that need the public
// key (chain payloads: addresses, PSBT inputs) do not pay a field square
// root each (about 18 µs on the 2-vCPU test machine, against about 70 µs
// for the signature).
//
// It is direct-mapped on the point's low X bytes, and an entry is
// compared by its whole compressed form, so a hit is exactly what rebuilding
// would give: the mapping from a compressed point to its uncompressed form
// is a function, whichever key it belongs to, so nothing needs
// invalidating when keys are replaced or deleted. Public keys are not
// secret; nothing here needs zeroizing. Keys whose points share an index
// only evict each other.
type pointCache struct {
	mu      sync.Mutex
	entries [pointCacheSize]pointEntry
}

type pointEntry struct {
	ok           bool
	compressed   [33]byte
	uncompressed [65]byte
}

// get returns a copy of the uncompressed point for compressed, rebuilding
// it with rebuild (which must return a 65-byte point or an error) when it
// is not cached. Failures are not cached.
func (c *pointCache) get(compressed *[33]byte, rebuild func() ([]byte, error)) ([]byte, error) {
	i := (int(compressed[31])<<8 | int(compressed[32])) & (pointCacheSize - 1)
	e := &c.entries[i]
	c.mu.Lock()
	if e.ok && e.compressed == *compressed {
		out := make([]byte, len(e.uncompressed))
		copy(out, e.uncompressed[:])
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	pub, err := rebuild()
	if err != nil || len(pub) != len(e.uncompressed) {
		return pub, err
	}
	c.mu.Lock()
	e.ok, e.compressed = true, *compressed
	copy(e.uncompressed[:], pub)
	c.mu.Unlock()
	return pub, nil
}
