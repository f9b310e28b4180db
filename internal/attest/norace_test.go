//go:build !race

package attest_test

// raceEnabled reports whether the race detector is on; it slows ECDSA
// verification about twentyfold.
const raceEnabled = false
