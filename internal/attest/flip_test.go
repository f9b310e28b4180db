package attest_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/attest"
)

// flipStride is the distance between flipped positions when not every byte
// is flipped. Measured on a 2-CPU machine for the 4479-byte document: every
// position takes ~12 s serially without -race (~6 s on 2 workers) and ~210 s
// with -race (about 47 ms per verification, ECDSA P-384 is slow under the
// race detector). Stride 16 plus the region boundaries is ~400 flips, ~10 s
// under -race on 2 workers.
const flipStride = 16

// region is a named byte range of a real document.
type region struct {
	name       string
	start, end int // [start, end)
}

// docRegions splits a real document into its COSE envelope, payload fields,
// certificates and signature, to show that the flip positions cover all of
// them.
func docRegions(t *testing.T, doc []byte, d *attest.Document) []region {
	t.Helper()
	// 84 44 a1013822 a0 59 LLLL <payload> 58 60 <96 bytes>
	require.Equal(t, []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59}, doc[:8])
	payloadLen := int(doc[8])<<8 | int(doc[9])
	sigHdr := 10 + payloadLen
	require.Equal(t, []byte{0x58, 0x60}, doc[sigHdr:sigHdr+2])
	require.Equal(t, len(doc), sigHdr+2+96)

	regions := []region{
		{"cose header", 0, 10},
		{"payload", 10, sigHdr},
		{"signature header", sigHdr, sigHdr + 2},
		{"signature", sigHdr + 2, len(doc)},
	}
	find := func(name string, needle []byte) {
		t.Helper()
		i := bytes.Index(doc, needle)
		require.GreaterOrEqual(t, i, 0, name)
		regions = append(regions, region{name, i, i + len(needle)})
	}
	for _, key := range []string{"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"} {
		find("key "+key, append([]byte{0x60 | byte(len(key))}, key...))
	}
	find("module_id value", []byte(d.ModuleID))
	find("certificate value", d.Certificate.Raw)
	for i, c := range d.CABundle {
		find(fmt.Sprintf("cabundle[%d] value", i), c.Raw)
	}
	find("user_data value", d.UserData)
	find("nonce value", d.Nonce)
	find("pcr4 value", d.PCRs[4])
	return regions
}

// flipPositions returns every position, or with stride > 1 every stride-th
// position plus the first and last four bytes of every region.
func flipPositions(n, stride int, regions []region) []int {
	set := map[int]bool{}
	for i := 0; i < n; i += stride {
		set[i] = true
	}
	for _, r := range regions {
		for k := range 4 {
			if r.start+k < r.end {
				set[r.start+k] = true
			}
			if r.end-1-k >= r.start {
				set[r.end-1-k] = true
			}
		}
	}
	positions := make([]int, 0, len(set))
	for i := range set {
		positions = append(positions, i)
	}
	slices.Sort(positions)
	return positions
}

// TestVerifyFlippedBytes changes one bit of one byte at a time in a real
// document and requires every variant to be rejected without a panic.
func TestVerifyFlippedBytes(t *testing.T) {
	rd := findDoc(t, hfDocFile)
	doc := readDoc(t, rd.file)
	opts := attest.Options{Now: rd.at(), AllowDebug: true}
	d, err := attest.Verify(doc, opts)
	require.NoError(t, err)

	regions := docRegions(t, doc, d)
	stride := 1
	if raceEnabled || testing.Short() {
		stride = flipStride
	}
	positions := flipPositions(len(doc), stride, regions)
	for _, r := range regions {
		i, _ := slices.BinarySearch(positions, r.start)
		assert.True(t, i < len(positions) && positions[i] < r.end, "region %s not covered", r.name)
	}

	start := time.Now()
	var (
		mu       sync.Mutex
		accepted []int
		panics   []int
		byErr    = map[string]int{}
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				m := bytes.Clone(doc)
				m[i] ^= 1 << (i % 8)
				got, err := attest.Verify(m, opts)
				mu.Lock()
				switch {
				case err == nil || got != nil:
					accepted = append(accepted, i)
				case errors.Is(err, attest.ErrPanic):
					panics = append(panics, i)
				default:
					byErr[sentinel(err)]++
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range positions {
		work <- i
	}
	close(work)
	wg.Wait()

	t.Logf("flipped %d of %d positions (stride %d) in %v: %v", len(positions), len(doc), stride, time.Since(start).Round(time.Millisecond), byErr)
	assert.Empty(t, accepted, "flipped documents accepted at these offsets")
	assert.Empty(t, panics, "flipped documents panicked the verifier at these offsets")
}

// sentinel names the first sentinel err wraps, for statistics.
func sentinel(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"malformed", attest.ErrMalformed},
		{"bad signature", attest.ErrBadSignature},
		{"untrusted", attest.ErrUntrusted},
		{"stale", attest.ErrStale},
		{"debug", attest.ErrDebugMode},
		{"pcr", attest.ErrPCRMismatch},
		{"nonce", attest.ErrNonceMismatch},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other: " + err.Error()
}
