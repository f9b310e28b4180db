package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// freezeFake keeps a freeze state the way the parent does.
type freezeFake struct {
	signerv1.UnimplementedSignerServiceServer
	mu  sync.Mutex
	st  *signerv1.FreezeState
	got []string
}

func (f *freezeFake) Freeze(_ context.Context, r *signerv1.FreezeRequest) (*signerv1.FreezeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, "freeze "+r.GetReason())
	if !f.st.GetFrozen() {
		f.st = &signerv1.FreezeState{Frozen: true, Reason: r.GetReason(), ChangedAtUnixMs: 1_700_000_000_000}
	}
	return &signerv1.FreezeResponse{State: proto.CloneOf(f.st)}, nil
}

func (f *freezeFake) Unfreeze(context.Context, *signerv1.UnfreezeRequest) (*signerv1.UnfreezeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, "unfreeze")
	f.st = &signerv1.FreezeState{ChangedAtUnixMs: 1_700_000_060_000}
	return &signerv1.UnfreezeResponse{State: proto.CloneOf(f.st)}, nil
}

func (f *freezeFake) GetFreezeState(context.Context, *signerv1.GetFreezeStateRequest) (*signerv1.GetFreezeStateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, "status")
	if f.st == nil {
		return nil, status.Error(codes.Unavailable, "the freeze state has not been read from the key store yet; retry")
	}
	return &signerv1.GetFreezeStateResponse{State: proto.CloneOf(f.st)}, nil
}

func TestFreezeCommands(t *testing.T) {
	f := &freezeFake{}
	addr := startServer(t, f)

	code, _, stderr := runCLI(t, "--addr", addr, "freeze", "status")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "Unavailable")

	// Command-line mistakes never reach the server.
	for _, args := range [][]string{
		{"freeze"},
		{"freeze", "--reason", ""},
		{"freeze", "--reason", strings.Repeat("x", 257)},
		{"freeze", "--reason", "two\nlines"},
		{"freeze", "--reason", "leaked", "key"},
		{"freeze", "status", "extra"},
		{"unfreeze"},
		{"unfreeze", "--yes", "extra"},
	} {
		code, _, stderr := runCLI(t, append([]string{"--addr", addr}, args...)...)
		assert.Equal(t, 2, code, "%q", args)
		assert.Contains(t, stderr, "InvalidArgument", "%q", args)
	}

	code, out, _ := runCLI(t, "--addr", addr, "freeze", "--reason", "leaked API credential")
	require.Equal(t, 0, code)
	assert.Equal(t, "frozen:  true\nreason:  leaked API credential\nsince:   2023-11-14T22:13:20Z\n", out)

	code, out, _ = runCLI(t, "--addr", addr, "freeze", "status", "--json")
	require.Equal(t, 0, code)
	assert.Equal(t, map[string]any{"frozen": true, "reason": "leaked API credential", "changed_at_unix_ms": 1.7e12}, decodeOne(t, out))

	code, out, _ = runCLI(t, "--addr", addr, "--json", "unfreeze", "--yes")
	require.Equal(t, 0, code)
	assert.Equal(t, map[string]any{"frozen": false, "reason": "", "changed_at_unix_ms": 1.70000006e12}, decodeOne(t, out))

	code, out, _ = runCLI(t, "--addr", addr, "freeze", "status")
	require.Equal(t, 0, code)
	assert.Equal(t, "frozen:  false\nsince:   2023-11-14T22:14:20Z\n", out)

	assert.Equal(t, []string{"status", "freeze leaked API credential", "status", "unfreeze", "status"}, f.got)
}
