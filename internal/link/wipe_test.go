package link_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

var credential = []byte("AKIDEXAMPLE/wJalrXUtnFEMI/K7MDENG")

// The writer's queue and a served request's buffer are reused; both are
// wiped once used, so that a request's secrets do not linger in them.
func TestBuffersWipedAfterUse(t *testing.T) {
	queue, err := link.WrittenQueue([]byte("hdr"), credential)
	require.NoError(t, err)
	require.False(t, bytes.Contains(queue, credential), "the written queue still holds the request")

	mem, err := link.ReleasedRequest(credential)
	require.NoError(t, err)
	require.False(t, bytes.Contains(mem, credential), "a served request's buffer still holds it")
}
