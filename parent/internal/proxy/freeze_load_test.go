package proxy_test

// A Sign that waits on a lazy key load checks the freeze again before it
// signs: a freeze answered during the load holds for it, even when the
// enclave could not be told.

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// lazyEnclave answers Sign with "key not loaded" until LoadKeys, and fails
// SetFreeze as an enclave whose link is being re-established does.
type lazyEnclave struct {
	fakeEnclave
	mu     sync.Mutex
	loaded bool
}

func (f *lazyEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	switch enclavev1.Method(method) {
	case enclavev1.Method_METHOD_SET_FREEZE:
		return status.Error(codes.Unavailable, "enclave unavailable")
	case enclavev1.Method_METHOD_LOAD_KEYS:
		f.mu.Lock()
		f.loaded = true
		f.mu.Unlock()
		resp.(*enclavev1.LoadKeysResponse).Results = []*signerv1.Status{{}}
		return nil
	case enclavev1.Method_METHOD_SIGN:
		f.mu.Lock()
		loaded := f.loaded
		f.mu.Unlock()
		if !loaded {
			return status.Error(codes.FailedPrecondition, enclavev1.KeyNotLoaded)
		}
	}
	return f.fakeEnclave.Call(ctx, method, req, resp)
}

func (f *lazyEnclave) CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error {
	in := new(enclavev1.SignRequest)
	if err := proto.Unmarshal(req, in); err != nil {
		return err
	}
	out := new(enclavev1.SignResponse)
	if err := f.Call(ctx, method, in, out); err != nil {
		return err
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return err
	}
	return resp(b)
}

// gatedStore holds Gets of keys/ until release is closed.
type gatedStore struct {
	store.Store
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedStore) Get(ctx context.Context, name string) ([]byte, string, error) {
	if strings.HasPrefix(name, "keys/") {
		g.once.Do(func() { close(g.reached) })
		<-g.release
	}
	return g.Store.Get(ctx, name)
}

func TestSignWaitingOnLoadHonoursFreeze(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	_, err = dir.Put(ctx, "keks/"+testKEK, []byte("kek"), store.Cond{IfAbsent: true})
	require.NoError(t, err)
	putKeys(t, dir, keyID(1))
	gs := &gatedStore{Store: dir, reached: make(chan struct{}), release: make(chan struct{})}
	svc := proxy.New(proxy.Config{Enclave: &lazyEnclave{}, Store: gs, Logger: slog.New(slog.DiscardHandler)})

	done := make(chan error, 1)
	go func() {
		_, err := svc.Sign(ctx, msgReq(keyID(1), 8))
		done <- err
	}()
	<-gs.reached // the Sign passed the freeze check and waits on the load

	_, err = svc.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"})
	require.NoError(t, err, "the operator is told signing is frozen")
	close(gs.release)
	err = <-done
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "a signature was made after Freeze answered OK")
}
