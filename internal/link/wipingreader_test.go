package link

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// scripted returns its chunks one per Read and records, for each read into
// the buffer, whether the memory it was given still held secret.
type scripted struct {
	chunks [][]byte
	secret []byte
	stale  []bool // per Read: p held secret before the read wrote to it
}

func (s *scripted) Read(p []byte) (int, error) {
	s.stale = append(s.stale, bytes.Contains(p[:cap(p)], s.secret))
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// The server's read buffer forgets a frame once it has been consumed: the
// next read, into the buffer's tail behind unread bytes or into the whole
// buffer, finds no trace of it, also after a read too large for the buffer
// went straight into the caller's slice.
func TestWipingReader(t *testing.T) {
	secret := []byte("AKIDEXAMPLE/wJalrXUtnFEMI")
	src := &scripted{secret: secret, chunks: [][]byte{
		append(append([]byte(Magic), secret...), "abc"...), // preamble, a frame, part of the next
		[]byte("defghij"),
		bytes.Repeat([]byte{'z'}, 100), // read straight into the caller's slice
		secret,
		[]byte("tail"),
	}}
	const size = 64
	br, wr := newWipingReader(src, size)

	require.NoError(t, readPreamble(br))
	got := make([]byte, len(secret))
	_, err := io.ReadFull(br, got)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// "abc" is unread; the buffer's tail is filled behind it.
	p, err := br.Peek(10)
	require.NoError(t, err)
	require.Equal(t, "abcdefghij", string(p))
	_, _ = br.Discard(10)

	big := make([]byte, 100)
	_, err = io.ReadFull(br, big) // empty buffer, large read: no buffering
	require.NoError(t, err)

	_, err = io.ReadFull(br, got)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	p, err = br.Peek(4)
	require.NoError(t, err)
	require.Equal(t, "tail", string(p))

	require.Equal(t, []bool{false, false, false, false, false}, src.stale,
		"a read found a consumed secret still in the buffer")

	// Dropped after a read that brought the secret, consumed or not (a
	// reader loop that stops at a protocol error): wipe clears it.
	src.chunks = [][]byte{append(append([]byte{}, secret...), 0xff)}
	_, err = br.Discard(4) // "tail"
	require.NoError(t, err)
	_, err = io.ReadFull(br, got)
	require.NoError(t, err)
	require.True(t, bytes.Contains(wr.buf, secret), "the secret is in the buffer before wipe")
	wr.wipe()
	require.False(t, bytes.Contains(wr.buf, secret), "wipe left the secret in the buffer")
	require.Equal(t, make([]byte, size), wr.buf, "wipe clears the whole buffer")
}
