package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const testKEK = "kek_00000000000000000000000000000001"

func keyID(n int) string { return fmt.Sprintf("key_%032x", n) }

// sealedKey is a SealedKey the parent can read the KEK id from; its
// contents mean nothing to the fake enclave.
func sealedKey(t *testing.T, id string, gen uint64) []byte {
	t.Helper()
	h, err := proto.Marshal(&sealedv1.SealedKeyHeader{Version: 1, KeyId: id, KekId: testKEK, Generation: gen})
	require.NoError(t, err)
	b, err := proto.Marshal(&sealedv1.SealedKey{Version: 1, Header: h})
	require.NoError(t, err)
	return b
}

// genOf reads the generation from a blob sealedKey made.
func genOf(t *testing.T, blob []byte) uint64 {
	t.Helper()
	var k sealedv1.SealedKey
	require.NoError(t, proto.Unmarshal(blob, &k))
	var h sealedv1.SealedKeyHeader
	require.NoError(t, proto.Unmarshal(k.GetHeader(), &h))
	return h.GetGeneration()
}

// lifecycleEnclave answers the key-lifecycle methods of the enclave API.
type lifecycleEnclave struct {
	t         *testing.T
	mu        sync.Mutex
	calls     []string
	failLoad  error
	failEvict error
	refuse    map[string]bool // DescribeKeys refuses these ids (DataLoss)
	unchanged bool            // SetKeyState answers with the current blob
}

func (f *lifecycleEnclave) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *lifecycleEnclave) Call(_ context.Context, method uint16, req, resp proto.Message) error {
	switch enclavev1.Method(method) {
	case enclavev1.Method_METHOD_DESCRIBE_KEYS:
		out := resp.(*enclavev1.DescribeKeysResponse)
		for _, b := range req.(*enclavev1.DescribeKeysRequest).GetKeys() {
			if f.refuse[b.GetKeyId()] {
				out.Keys = append(out.Keys, &enclavev1.DescribedKey{Error: &signerv1.Status{Code: int32(codes.DataLoss), Message: "sealed key refused"}})
				continue
			}
			out.Keys = append(out.Keys, &enclavev1.DescribedKey{Key: &signerv1.Key{KeyId: b.GetKeyId()}})
		}
		return nil
	case enclavev1.Method_METHOD_SET_KEY_STATE:
		in := req.(*enclavev1.SetKeyStateRequest)
		f.record("state " + in.GetKeyId())
		out := resp.(*enclavev1.SetKeyStateResponse)
		gen := genOf(f.t, in.GetCurrent().GetSealedKey()) + 1
		out.Key = &signerv1.Key{KeyId: in.GetKeyId(), State: in.GetState(), Sealing: &signerv1.Sealing{KekId: testKEK, Generation: gen}}
		out.SealedKey = sealedKey(f.t, in.GetKeyId(), gen)
		if f.unchanged {
			out.SealedKey = in.GetCurrent().GetSealedKey()
		}
		return nil
	case enclavev1.Method_METHOD_LOAD_KEYS:
		f.record("load")
		if f.failLoad != nil {
			return f.failLoad
		}
		out := resp.(*enclavev1.LoadKeysResponse)
		for range req.(*enclavev1.LoadKeysRequest).GetKeys() {
			out.Results = append(out.Results, &signerv1.Status{})
		}
		return nil
	case enclavev1.Method_METHOD_CREATE_KEY:
		id := keyID(99)
		out := resp.(*enclavev1.CreateKeyResponse)
		out.Key = &signerv1.Key{KeyId: id, Sealing: &signerv1.Sealing{KekId: testKEK}}
		out.SealedKey = sealedKey(f.t, id, 1)
		out.SealedKek = []byte("kek")
		return nil
	case enclavev1.Method_METHOD_EVICT_KEY:
		in := req.(*enclavev1.EvictKeyRequest)
		f.record(fmt.Sprintf("evict %s deleted=%v", in.GetKeyId(), in.GetDeleted()))
		return f.failEvict
	}
	return status.Errorf(codes.Unimplemented, "method %d", method)
}

func (f *lifecycleEnclave) CallRaw(context.Context, uint16, []byte, func([]byte) error) error {
	return status.Error(codes.Unimplemented, "raw")
}

func newLifecycle(t *testing.T) (*proxy.Service, *lifecycleEnclave, store.Store) {
	t.Helper()
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	_, err = st.Put(context.Background(), "keks/"+testKEK, []byte("kek"), store.Cond{IfAbsent: true})
	require.NoError(t, err)
	enc := &lifecycleEnclave{t: t, refuse: map[string]bool{}}
	return proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler)}), enc, st
}

func putKeys(t *testing.T, st store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := st.Put(context.Background(), "keys/"+id, sealedKey(t, id, 1), store.Cond{IfAbsent: true})
		require.NoError(t, err)
	}
}

func TestDeleteKeyRetryStillEvicts(t *testing.T) {
	svc, enc, st := newLifecycle(t)
	putKeys(t, st, keyID(1))
	enc.failEvict = status.Error(codes.Unavailable, "enclave unavailable")
	_, err := svc.DeleteKey(context.Background(), &signerv1.DeleteKeyRequest{KeyId: keyID(1)})
	require.Equal(t, codes.Unavailable, status.Code(err), "the blob is gone but the enclave was not told")

	enc.failEvict = nil
	_, err = svc.DeleteKey(context.Background(), &signerv1.DeleteKeyRequest{KeyId: keyID(1)})
	require.Equal(t, codes.NotFound, status.Code(err))
	assert.Equal(t, []string{
		"evict " + keyID(1) + " deleted=true",
		"evict " + keyID(1) + " deleted=true",
	}, enc.calls, "the retry still makes the enclave drop and refuse the key")
}

func TestListKeysPagesPastSkippedKeys(t *testing.T) {
	svc, enc, st := newLifecycle(t)
	ctx := context.Background()
	var all []string
	for i := 1; i <= 7; i++ {
		all = append(all, keyID(i))
	}
	putKeys(t, st, all...)
	enc.refuse[keyID(2)] = true // refused by the enclave: left out, not fatal
	// A name that is not a key is skipped too.
	_, err := st.Put(ctx, "keys/not-a-key", []byte("x"), store.Cond{IfAbsent: true})
	require.NoError(t, err)

	seen := []string{}
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		r, err := svc.ListKeys(ctx, &signerv1.ListKeysRequest{PageSize: 1, PageToken: token})
		require.NoError(t, err)
		for _, k := range r.GetKeys() {
			seen = append(seen, k.GetKeyId())
		}
		if token = r.GetNextPageToken(); token == "" {
			break
		}
	}
	want := append([]string{all[0]}, all[2:]...)
	assert.Equal(t, want, seen, "every key but the refused one, in order; empty pages still lead on")

	// A page whose only key is refused is empty but has a token.
	r, err := svc.ListKeys(ctx, &signerv1.ListKeysRequest{PageSize: 1, PageToken: keyID(1)})
	require.NoError(t, err)
	assert.Empty(t, r.GetKeys())
	assert.Equal(t, keyID(2), r.GetNextPageToken())

	// An empty store lists nothing.
	svc2, _, _ := newLifecycle(t)
	r, err = svc2.ListKeys(ctx, &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	assert.Empty(t, r.GetKeys())
	assert.Empty(t, r.GetNextPageToken())
}

func TestDisableReportsAnEnclaveItCouldNotUpdate(t *testing.T) {
	svc, enc, st := newLifecycle(t)
	putKeys(t, st, keyID(1))
	enc.failLoad = status.Error(codes.Unavailable, "enclave unavailable")
	enc.failEvict = status.Error(codes.Unavailable, "enclave unavailable")
	_, err := svc.DisableKey(context.Background(), &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "stored")

	// With the evict working, the stored state takes effect on next use.
	enc.failEvict = nil
	_, err = svc.DisableKey(context.Background(), &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
}

// conflictStore fails every compare-and-swap, as if the key kept changing.
type conflictStore struct{ store.Store }

func (c conflictStore) Put(ctx context.Context, name string, data []byte, cond store.Cond) (string, error) {
	if cond.IfMatch != "" {
		return "", store.ErrConflict
	}
	return c.Store.Put(ctx, name, data, cond)
}

func TestResealGivesUpWithAborted(t *testing.T) {
	_, enc, st := newLifecycle(t)
	putKeys(t, st, keyID(1))
	svc := proxy.New(proxy.Config{Enclave: enc, Store: conflictStore{st}, Logger: slog.New(slog.DiscardHandler)})
	_, err := svc.EnableKey(context.Background(), &signerv1.EnableKeyRequest{KeyId: keyID(1)})
	require.Equal(t, codes.Aborted, status.Code(err), err)
}

func TestResealUnchangedWritesNothing(t *testing.T) {
	_, enc, st := newLifecycle(t)
	putKeys(t, st, keyID(1))
	enc.unchanged = true
	// Every compare-and-swap fails: the call succeeds only without a write.
	svc := proxy.New(proxy.Config{Enclave: enc, Store: conflictStore{st}, Logger: slog.New(slog.DiscardHandler)})
	_, err := svc.DisableKey(context.Background(), &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
	assert.Equal(t, []string{"state " + keyID(1), "load"}, enc.calls, "the cache still follows the store")
}

// racingStore answers the first put-if-absent of each name with a conflict
// after writing it, as S3 does (409) when a concurrent writer of the same
// bytes wins, or as a retried write whose first attempt landed sees.
type racingStore struct {
	store.Store
	mu   sync.Mutex
	seen map[string]bool
}

func (r *racingStore) Put(ctx context.Context, name string, data []byte, cond store.Cond) (string, error) {
	etag, err := r.Store.Put(ctx, name, data, cond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && cond.IfAbsent && !r.seen[name] {
		r.seen[name] = true
		return "", store.ErrConflict
	}
	return etag, err
}

func TestCreateKeySurvivesConflictingIdenticalWrites(t *testing.T) {
	_, enc, st := newLifecycle(t)
	// The KEK blob the fake enclave returns is already stored as "kek" by
	// newLifecycle; the key blob is new.
	rs := &racingStore{Store: st, seen: map[string]bool{}}
	svc := proxy.New(proxy.Config{Enclave: enc, Store: rs, Logger: slog.New(slog.DiscardHandler)})
	r, err := svc.CreateKey(context.Background(), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err, "same bytes already stored count as stored")
	require.Equal(t, keyID(99), r.GetKey().GetKeyId())
	got, _, err := st.Get(context.Background(), "keys/"+keyID(99))
	require.NoError(t, err)
	require.Equal(t, sealedKey(t, keyID(99), 1), got)
	require.NotContains(t, enc.calls, "evict "+keyID(99)+" deleted=true", "the stored key is not discarded")

	// Different bytes under the name are DataLoss, and the key is dropped.
	svc2, enc2, st2 := newLifecycle(t)
	_, err = st2.Put(context.Background(), "keys/"+keyID(99), []byte("not this key"), store.Cond{IfAbsent: true})
	require.NoError(t, err)
	_, err = svc2.CreateKey(context.Background(), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.Equal(t, codes.DataLoss, status.Code(err), err)
	require.Contains(t, enc2.calls, "evict "+keyID(99)+" deleted=true", "a key whose blob is not stored is dropped")
}

// unloadedEnclave answers every SignBatch item with "key not loaded", the
// answer that makes the parent load the item's key from the store.
type unloadedEnclave struct{ lifecycleEnclave }

func (f *unloadedEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	if enclavev1.Method(method) != enclavev1.Method_METHOD_SIGN_BATCH {
		return f.lifecycleEnclave.Call(ctx, method, req, resp)
	}
	out := resp.(*enclavev1.SignBatchResponse)
	out.Response = &signerv1.SignBatchResponse{}
	for range req.(*enclavev1.SignBatchRequest).GetRequest().GetRequests() {
		out.Response.Results = append(out.Response.Results, &signerv1.SignResult{Result: &signerv1.SignResult_Error{
			Error: &signerv1.Status{Code: int32(codes.FailedPrecondition), Message: enclavev1.KeyNotLoaded}}})
	}
	return nil
}

func TestSignBatchMalformedKeyIDsAreTheClientsMistake(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	var logs syncbuf.Buffer
	enc := &unloadedEnclave{lifecycleEnclave{t: t}}
	s := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	out, err := s.SignBatch(context.Background(), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{
		msgReq("Key_ABC", 1), msgReq("../keys/x", 1), msgReq("", 1),
	}})
	require.NoError(t, err)
	want := []codes.Code{codes.NotFound, codes.NotFound, codes.InvalidArgument}
	for i, r := range out.GetResults() {
		assert.Equal(t, want[i], codes.Code(r.GetError().GetCode()), "item %d: %v", i, r.GetError())
	}
	assert.Empty(t, enc.calls, "no key is loaded for an id that cannot name one")
	assert.NotContains(t, logs.String(), "level=ERROR", "a client's bad id is not the operator's problem")
}

// Key methods judge a client's key id as Sign does: empty or over the
// documented size limit is InvalidArgument naming key_id; any other id this
// service could not have issued is NotFound, without touching the store or
// the enclave.
func TestKeyIDShapes(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	enc := &unloadedEnclave{lifecycleEnclave{t: t}}
	s := proxy.New(proxy.Config{Enclave: enc, Store: st})
	ctx := context.Background()
	methods := map[string]func(id string) error{
		"GetKey": func(id string) error {
			_, err := s.GetKey(ctx, &signerv1.GetKeyRequest{KeyId: id})
			return err
		},
		"DisableKey": func(id string) error {
			_, err := s.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: id})
			return err
		},
		"EnableKey": func(id string) error {
			_, err := s.EnableKey(ctx, &signerv1.EnableKeyRequest{KeyId: id})
			return err
		},
		"RotateKey": func(id string) error {
			_, err := s.RotateKey(ctx, &signerv1.RotateKeyRequest{KeyId: id})
			return err
		},
		"DeleteKey": func(id string) error {
			_, err := s.DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: id})
			return err
		},
	}
	cases := []struct {
		id   string
		code codes.Code
		msg  string
	}{
		{"", codes.InvalidArgument, "key_id: required"},
		{strings.Repeat("k", limits.KeyID+1), codes.InvalidArgument, "key_id: longer than 128 bytes"},
		{"key_" + strings.Repeat("a", limits.KeyID-4), codes.NotFound, "key not found"},
		{"notakey", codes.NotFound, "key not found"},
		{"key_0123456789abcdef0123456789abcdeF", codes.NotFound, "key not found"},
	}
	for name, call := range methods {
		for _, c := range cases {
			err := call(c.id)
			assert.Equal(t, c.code, status.Code(err), "%s(%.20q…): %v", name, c.id, err)
			assert.Equal(t, c.msg, status.Convert(err).Message(), "%s(%.20q…)", name, c.id)
		}
	}
	assert.Empty(t, enc.calls, "no id here names a key, so the enclave is never asked")
}
