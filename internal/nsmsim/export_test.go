//go:build !nosim

package nsmsim

// NewEnclaveID is newEnclaveID, for tests.
var NewEnclaveID = newEnclaveID

// SendRaw hands raw request bytes to the simulated device and returns the
// raw response bytes, bypassing hf/nsm's encoder and decoder.
func (s *Simulator) SendRaw(req []byte) ([]byte, error) { return s.sendRaw(req) }

// Internal limits, for tests.
const (
	MaxAuxSize      = maxAuxSize
	MaxRequestSize  = maxRequestSize
	LeafLifetime    = leafLifetime
	LeafBackdate    = leafBackdate
	RandomChunkSize = randomChunk
)
