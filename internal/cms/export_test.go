package cms

// Encode exposes the envelope encoder so tests can re-encode parsed vectors.
func Encode(env *Envelope, chunkSize int) []byte { return encode(env, chunkSize) }

// MaxDepth is the nesting limit of the BER walker.
const MaxDepth = maxDepth
