package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// The parent keeps every key as two store objects it cannot open: the
// sealed key (keys/<key_id>) and the sealed KEK it names (keks/<kek_id>,
// shared by many keys and never changed once written). The enclave caches
// opened keys; when a call needs one it has not loaded, it answers
// FailedPrecondition "key not loaded" and the parent hands in the blobs and
// retries, so an enclave restart costs clients only latency.

// Paging limits of ListKeys.
const (
	MaxPageSize  = 1000
	DefaultPage  = 100
	MaxListBytes = 1 << 20
	// casRetries bounds the re-reads of a key whose blob changed under a
	// state change or rotation.
	casRetries = 3
)

func keyName(id string) string { return "keys/" + id }
func kekName(id string) string { return "keks/" + id }

// validKeyID checks the shape of a client's key id before it becomes a
// store name. An id over the documented size limit is InvalidArgument, as
// in Sign; any other id this service could not have issued is NotFound.
func validKeyID(id string) error {
	const prefix = "key_"
	if len(id) != len(prefix)+32 || !strings.HasPrefix(id, prefix) {
		switch {
		case id == "":
			return status.Error(codes.InvalidArgument, "key_id: required")
		case len(id) > limits.KeyID:
			return status.Errorf(codes.InvalidArgument, "key_id: longer than %d bytes", limits.KeyID)
		}
		return status.Error(codes.NotFound, "key not found")
	}
	for _, c := range id[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return status.Error(codes.NotFound, "key not found")
		}
	}
	return nil
}

// storeError turns a store failure into a status. Not found is NotFound,
// an oversized stored blob DataLoss (like any blob the enclave refuses);
// anything else is Unavailable (the store is a dependency, not a bug).
func (s *Service) storeError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, "key not found")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded reading the key store")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, store.ErrTooLarge):
		// Only a read meets this: the parent never writes such a blob.
		s.log.ErrorContext(ctx, "key store holds an oversized blob", "op", what, "err", err)
		return status.Error(codes.DataLoss, "sealed key refused: the stored blob is larger than any sealed blob (altered or not written by nitrosigner)")
	case errors.Is(err, store.ErrInvalidName):
		s.log.ErrorContext(ctx, "key store refused a request", "op", what, "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	s.log.ErrorContext(ctx, "key store failed", "op", what, "err", err)
	return status.Errorf(codes.Unavailable, "key store unavailable (%s)", what)
}

// kekCache remembers KEK blobs: they never change once stored.
type kekCache struct {
	mu    sync.RWMutex
	blobs map[string][]byte
}

func (c *kekCache) get(id string) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b, ok := c.blobs[id]
	return b, ok
}

func (c *kekCache) put(id string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.blobs) > 1<<14 {
		clear(c.blobs)
	}
	c.blobs[id] = b
}

// kekIDOf reads the KEK id from a sealed key's public header.
func kekIDOf(sealedKey []byte) (string, error) {
	var k sealedv1.SealedKey
	if err := proto.Unmarshal(sealedKey, &k); err != nil {
		return "", err
	}
	var h sealedv1.SealedKeyHeader
	if err := proto.Unmarshal(k.GetHeader(), &h); err != nil {
		return "", err
	}
	if !strings.HasPrefix(h.GetKekId(), "kek_") || len(h.GetKekId()) != 36 {
		return "", fmt.Errorf("bad kek id")
	}
	return h.GetKekId(), nil
}

// blobsFor reads a key's blobs from the store.
func (s *Service) blobsFor(ctx context.Context, id string) (*enclavev1.SealedBlobs, string, error) {
	sk, etag, err := s.store.Get(ctx, keyName(id))
	if err != nil {
		return nil, "", s.storeError(ctx, "get key", err)
	}
	kekID, err := kekIDOf(sk)
	if err != nil {
		s.log.WarnContext(ctx, "stored key blob does not decode", "key_id", id, "err", err)
		return nil, "", status.Error(codes.DataLoss, "sealed key refused: the stored blob does not decode")
	}
	kek, err := s.kekBlob(ctx, kekID)
	if err != nil {
		return nil, "", err
	}
	return &enclavev1.SealedBlobs{KeyId: id, SealedKey: sk, SealedKek: kek}, etag, nil
}

func (s *Service) kekBlob(ctx context.Context, kekID string) ([]byte, error) {
	if b, ok := s.keks.get(kekID); ok {
		return b, nil
	}
	b, _, err := s.store.Get(ctx, kekName(kekID))
	if errors.Is(err, store.ErrNotFound) {
		s.log.ErrorContext(ctx, "sealed KEK missing from the store", "kek_id", kekID)
		return nil, status.Errorf(codes.DataLoss, "the key's KEK %s is missing from the store", kekID)
	}
	if err != nil {
		return nil, s.storeError(ctx, "get kek", err)
	}
	s.keks.put(kekID, b)
	return b, nil
}

// storeKEK writes a KEK blob once (put-if-absent). An existing object must
// hold the same bytes.
func (s *Service) storeKEK(ctx context.Context, kekID string, blob []byte) error {
	if b, ok := s.keks.get(kekID); ok && string(b) == string(blob) {
		return nil
	}
	if err := s.putOnce(ctx, kekName(kekID), blob); err != nil {
		return err
	}
	s.keks.put(kekID, blob)
	return nil
}

// putOnce stores blob under name if absent. Finding the same bytes there
// already is success: a concurrent writer of the same blob (many creates
// sharing a new KEK), or a retried write whose first attempt landed. S3
// answers concurrent conditional writes with 409; that is retried.
func (s *Service) putOnce(ctx context.Context, name string, blob []byte) error {
	for attempt := 0; ; attempt++ {
		_, err := s.store.Put(ctx, name, blob, store.Cond{IfAbsent: true})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrConflict) {
			return s.storeError(ctx, "put "+name, err)
		}
		old, _, gerr := s.store.Get(ctx, name)
		switch {
		case gerr == nil && string(old) == string(blob):
			return nil
		case gerr == nil:
			s.log.ErrorContext(ctx, "a different blob is stored under the same name", "name", name)
			return status.Errorf(codes.DataLoss, "%s: the store holds a different blob", name)
		case errors.Is(gerr, store.ErrNotFound) && attempt < casRetries:
			continue // the conflicting write did not land: try again
		default:
			return s.storeError(ctx, "get "+name, gerr)
		}
	}
}

// isNotLoaded reports whether err is the enclave's "key not loaded".
func isNotLoaded(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.FailedPrecondition && st.Message() == enclavev1.KeyNotLoaded
}

// loadOne loads one key. Concurrent first uses of one key (a hot key after
// an enclave restart) share one store read and one LoadKeys call.
func (s *Service) loadOne(ctx context.Context, id string) error {
	ch := s.loads.DoChan(id, func() (any, error) {
		// Not bound to the first caller's cancellation, but to the call
		// timeout.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		return nil, s.load(lctx, []string{id})[0]
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// load hands the enclave the blobs of the given keys. It returns one
// status error (or nil) per id. When the enclave lacks AWS credentials
// (it restarted), they are pushed and the load is tried once more.
//
// A load reads blobs and then hands them over, so a change can land in
// between. A change the enclave is told of one by one raises its floor:
// the older blob is refused (Aborted) and read again here. One it is not
// (a sync that made it drop every cached key, changes.go) is caught by the
// change log's epoch: a load that saw it move reads its keys again, and a
// key gone from the store meanwhile is dropped from the cache.
func (s *Service) load(ctx context.Context, ids []string) []error {
	var errs []error
	for attempt := range loadAttempts {
		epoch := s.changes.epoch.Load()
		errs = s.loadOnce(ctx, ids)
		for _, err := range errs {
			if s.needsCredentials(ctx, err) {
				errs = s.loadOnce(ctx, ids)
				break
			}
		}
		if attempt > 0 {
			s.evictGone(ctx, ids, errs)
		}
		if s.changes.epoch.Load() == epoch && !slices.ContainsFunc(errs, isStale) {
			return errs
		}
	}
	for i, err := range errs {
		if isStale(err) {
			errs[i] = status.Error(codes.Aborted, "the key changed while it was being loaded; retry")
		}
	}
	return errs
}

// loadAttempts bounds the reads of one load that keeps meeting changes.
const loadAttempts = 3

// isStale reports whether the enclave refused a blob as older than one it
// has seen.
func isStale(err error) bool { return status.Code(err) == codes.Aborted }

// evictGone drops from the enclave's cache the keys a repeated load found
// gone from the store: the first attempt may have loaded them.
func (s *Service) evictGone(ctx context.Context, ids []string, errs []error) {
	for i, err := range errs {
		if status.Code(err) == codes.NotFound {
			if eerr := s.call(ctx, enclavev1.Method_METHOD_EVICT_KEY, &enclavev1.EvictKeyRequest{KeyId: ids[i]}, &enclavev1.EvictKeyResponse{}); eerr != nil {
				s.log.WarnContext(ctx, "dropping a key deleted during its load failed", "key_id", ids[i], "err", eerr)
			}
		}
	}
}

func (s *Service) loadOnce(ctx context.Context, ids []string) []error {
	errs := make([]error, len(ids))
	req := &enclavev1.LoadKeysRequest{}
	at := make([]int, 0, len(ids))
	for i, id := range ids {
		b, _, err := s.blobsFor(ctx, id)
		if err != nil {
			errs[i] = err
			continue
		}
		req.Keys = append(req.Keys, b)
		at = append(at, i)
	}
	if len(req.Keys) == 0 {
		return errs
	}
	var out enclavev1.LoadKeysResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_LOAD_KEYS, req, &out); err != nil {
		for _, i := range at {
			errs[i] = err
		}
		return errs
	}
	if len(out.GetResults()) != len(at) {
		for _, i := range at {
			errs[i] = status.Error(codes.Internal, "malformed enclave answer: LoadKeys result count")
		}
		return errs
	}
	for j, i := range at {
		if r := out.GetResults()[j]; r.GetCode() != 0 {
			errs[i] = status.Error(codes.Code(r.GetCode()), r.GetMessage())
		}
	}
	return errs
}

// CreateKey implements signerv1.SignerServiceServer. The sealed KEK and key
// are stored before the client hears of the key.
func (s *Service) CreateKey(ctx context.Context, r *signerv1.CreateKeyRequest) (*signerv1.CreateKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var out enclavev1.CreateKeyResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	k := out.GetKey()
	if err := validKeyID(k.GetKeyId()); err != nil || len(out.GetSealedKey()) == 0 || len(out.GetSealedKek()) == 0 {
		return nil, status.Error(codes.Internal, "malformed enclave answer: CreateKey")
	}
	discard := func(err error) error {
		// Drop the key from the enclave's cache so that nothing can use a
		// key whose blob is not stored.
		if eerr := s.call(context.WithoutCancel(ctx), enclavev1.Method_METHOD_EVICT_KEY, &enclavev1.EvictKeyRequest{KeyId: k.GetKeyId(), Deleted: true}, &enclavev1.EvictKeyResponse{}); eerr != nil {
			s.log.ErrorContext(ctx, "unstored key could not be dropped from the enclave", "key_id", k.GetKeyId(), "err", eerr)
		}
		return err
	}
	if err := s.storeKEK(ctx, k.GetSealing().GetKekId(), out.GetSealedKek()); err != nil {
		return nil, discard(err)
	}
	if err := s.putOnce(ctx, keyName(k.GetKeyId()), out.GetSealedKey()); err != nil {
		return nil, discard(err)
	}
	s.log.InfoContext(ctx, "key created", "key_id", k.GetKeyId(), "algorithm", k.GetAlgorithm().String(),
		"kek_id", k.GetSealing().GetKekId())
	return &signerv1.CreateKeyResponse{Key: k, Proof: out.GetProof()}, nil
}

// GetKey implements signerv1.SignerServiceServer: the enclave opens the
// stored blob, describes the key and signs its statement (with an
// attestation document over the client's nonce, if one was sent).
func (s *Service) GetKey(ctx context.Context, r *signerv1.GetKeyRequest) (*signerv1.GetKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := validKeyID(r.GetKeyId()); err != nil {
		return nil, err
	}
	b, _, err := s.blobsFor(ctx, r.GetKeyId())
	if err != nil {
		return nil, err
	}
	described, errs, err := s.describe(ctx, &enclavev1.DescribeKeysRequest{
		Keys: []*enclavev1.SealedBlobs{b}, Prove: true, AttestationNonce: r.GetAttestationNonce()})
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	return &signerv1.GetKeyResponse{Key: described[0].GetKey(), Proof: described[0].GetProof()}, nil
}

// describe has the enclave open and describe the keys of req: a described
// key or a status error per item. An enclave without AWS credentials
// (after a restart) gets them pushed and is asked once more.
func (s *Service) describe(ctx context.Context, req *enclavev1.DescribeKeysRequest) ([]*enclavev1.DescribedKey, []error, error) {
	keys, errs, err := s.describeOnce(ctx, req)
	for _, e := range errs {
		if s.needsCredentials(ctx, e) {
			return s.describeOnce(ctx, req)
		}
	}
	return keys, errs, err
}

func (s *Service) describeOnce(ctx context.Context, req *enclavev1.DescribeKeysRequest) ([]*enclavev1.DescribedKey, []error, error) {
	var out enclavev1.DescribeKeysResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_DESCRIBE_KEYS, req, &out); err != nil {
		return nil, nil, err
	}
	items := req.GetKeys()
	if len(out.GetKeys()) != len(items) {
		return nil, nil, status.Error(codes.Internal, "malformed enclave answer: DescribeKeys result count")
	}
	keys, errs := make([]*enclavev1.DescribedKey, len(items)), make([]error, len(items))
	for i, d := range out.GetKeys() {
		switch e := d.GetError(); {
		case e != nil && e.GetCode() != 0:
			errs[i] = status.Error(codes.Code(e.GetCode()), e.GetMessage())
		case d.GetKey().GetKeyId() != items[i].GetKeyId():
			return nil, nil, status.Error(codes.Internal, "malformed enclave answer: DescribeKeys key id")
		default:
			keys[i] = d
		}
	}
	return keys, errs, nil
}

// ListKeys implements signerv1.SignerServiceServer: a page of the store's
// keys, in key id order, each opened and described by the enclave.
func (s *Service) ListKeys(ctx context.Context, r *signerv1.ListKeysRequest) (*signerv1.ListKeysResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	size := int(r.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		return nil, status.Errorf(codes.InvalidArgument, "page_size: must be 0..%d, got %d", MaxPageSize, size)
	case size == 0:
		size = DefaultPage
	}
	after := ""
	if t := r.GetPageToken(); t != "" {
		if validKeyID(t) != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token: malformed; pass the next_page_token of the previous page")
		}
		after = keyName(t)
	}
	names, err := s.store.List(ctx, "keys/", after, size+1)
	if err != nil {
		return nil, s.storeError(ctx, "list keys", err)
	}
	page := names[:min(len(names), size)]
	fetched := s.fetchAll(ctx, page)
	items := make([]*enclavev1.SealedBlobs, 0, len(page))
	bytes, last := 0, ""
	for i, n := range page {
		id := strings.TrimPrefix(n, "keys/")
		if validKeyID(id) != nil {
			last = n
			continue
		}
		b, err := fetched[i].blobs, fetched[i].err
		switch {
		case status.Code(err) == codes.NotFound:
			last = n
			continue // deleted since the listing
		case status.Code(err) == codes.DataLoss:
			s.log.ErrorContext(ctx, "listing skips a key whose stored blobs are refused", "key_id", id, "err", err)
			last = n
			continue
		case err != nil:
			return nil, err
		}
		bytes += len(b.GetSealedKey())
		if bytes > MaxListBytes && len(items) > 0 {
			break
		}
		items = append(items, b)
		last = n
	}
	out := &signerv1.ListKeysResponse{}
	if len(items) > 0 {
		keys, errs, err := s.describe(ctx, &enclavev1.DescribeKeysRequest{Keys: items})
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			switch code := status.Code(errs[i]); {
			case k != nil:
				out.Keys = append(out.Keys, k.GetKey())
			case code == codes.Unavailable || code == codes.DeadlineExceeded:
				return nil, errs[i] // transient: fail the page, the client retries
			default:
				s.log.ErrorContext(ctx, "listing skips a key the enclave refuses", "key_id", items[i].GetKeyId(),
					"code", code.String(), "err", status.Convert(errs[i]).Message())
			}
		}
	}
	// The token is the last store name examined, so pages that are empty
	// (all skipped) or cut short still lead on.
	if last != "" && (len(names) > size || last != page[len(page)-1]) {
		out.NextPageToken = strings.TrimPrefix(last, "keys/")
	}
	return out, nil
}

type fetchedBlobs struct {
	blobs *enclavev1.SealedBlobs
	err   error
}

// listReads bounds the store reads one ListKeys page runs at once.
const listReads = 16

// fetchAll reads the blobs of the keys named, listReads at a time.
func (s *Service) fetchAll(ctx context.Context, names []string) []fetchedBlobs {
	out := make([]fetchedBlobs, len(names))
	sem := make(chan struct{}, listReads)
	var wg sync.WaitGroup
	for i, n := range names {
		id := strings.TrimPrefix(n, "keys/")
		if validKeyID(id) != nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i].blobs, _, out[i].err = s.blobsFor(ctx, id)
		})
	}
	wg.Wait()
	return out
}

// reseal runs one re-sealing operation (state change or rotation) with
// compare-and-swap on the key's blob, then loads the new blob so that the
// enclave's cache follows at once.
func (s *Service) reseal(ctx context.Context, id string, op func(cur *enclavev1.SealedBlobs) (key *signerv1.Key, sealedKey, sealedKEK []byte, err error)) (*signerv1.Key, error) {
	if err := validKeyID(id); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		cur, etag, err := s.blobsFor(ctx, id)
		if err != nil {
			return nil, err
		}
		key, sk, kek, err := op(cur)
		if err != nil {
			return nil, err
		}
		kekBlob := cur.GetSealedKek()
		if len(kek) > 0 {
			if err := s.storeKEK(ctx, key.GetSealing().GetKekId(), kek); err != nil {
				return nil, err
			}
			kekBlob = kek
		}
		// The enclave hands back the current blob when there is nothing to
		// change (a repeated disable): no write, but the load below still
		// brings this enclave's cache up to the stored state.
		changed := len(kek) > 0 || !bytes.Equal(sk, cur.GetSealedKey())
		if changed {
			_, err = s.store.Put(ctx, keyName(id), sk, store.Cond{IfMatch: etag})
			if errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
				if attempt < casRetries {
					continue // changed under us: redo from the new blob
				}
				return nil, status.Error(codes.Aborted, "the key changed concurrently several times; retry")
			}
			if err != nil {
				return nil, s.storeError(ctx, "put key", err)
			}
		}
		var out enclavev1.LoadKeysResponse
		err = s.call(ctx, enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{
			{KeyId: id, SealedKey: sk, SealedKek: kekBlob}}}, &out)
		if err == nil && len(out.GetResults()) == 1 && out.GetResults()[0].GetCode() != 0 {
			err = status.Error(codes.Code(out.GetResults()[0].GetCode()), out.GetResults()[0].GetMessage())
		}
		if err != nil {
			// The new blob is stored. Drop the cached copy so the enclave
			// loads the stored blob on the key's next use; if even that
			// fails, the enclave may act on the old state: say so.
			s.log.WarnContext(ctx, "re-sealed key stored but not loaded", "key_id", id, "err", err)
			eerr := s.call(context.WithoutCancel(ctx), enclavev1.Method_METHOD_EVICT_KEY, &enclavev1.EvictKeyRequest{KeyId: id}, &enclavev1.EvictKeyResponse{})
			if eerr != nil {
				return nil, status.Errorf(codes.Unavailable, "the new key state is stored, but the enclave could not be updated (%s); retry", status.Convert(eerr).Message())
			}
		}
		// A call that changed nothing appends nothing (idempotent scripts
		// must not flood the log), unless it retries one whose append
		// failed.
		if err := s.noteChange(ctx, changed, &enclavev1.KeyChange{KeyId: id, Generation: key.GetSealing().GetGeneration()}); err != nil {
			return nil, err
		}
		return key, nil
	}
}

// noteChange appends a change made through this parent to the change log,
// for the enclaves of other parents sharing the store; a call that changed
// nothing (changed false) appends only when it retries one whose append
// failed. A failure is the client's error: those enclaves may act on the
// old state until they reload the key, and a retry of the call appends it.
func (s *Service) noteChange(ctx context.Context, changed bool, c *enclavev1.KeyChange) error {
	if !s.changes.takeUnrecorded(c.GetKeyId()) && !changed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if err := s.recordChange(ctx, c); err != nil {
		s.changes.markUnrecorded(c.GetKeyId())
		s.log.ErrorContext(ctx, "a key change could not be appended to the key store's change log; other parents' enclaves may act on the key's old state",
			"key_id", c.GetKeyId(), "err", err)
		return status.Error(codes.Unavailable, "the change is stored and in force on this instance, but it could not be recorded for other instances sharing the key store (see the parent's log), which may act on the old state until they reload the key; retry the call")
	}
	return nil
}

func (s *Service) setState(ctx context.Context, id string, st signerv1.KeyState) (*signerv1.Key, error) {
	return s.reseal(ctx, id, func(cur *enclavev1.SealedBlobs) (*signerv1.Key, []byte, []byte, error) {
		var out enclavev1.SetKeyStateResponse
		err := s.call(ctx, enclavev1.Method_METHOD_SET_KEY_STATE, &enclavev1.SetKeyStateRequest{KeyId: id, State: st, Current: cur}, &out)
		if err == nil && (out.GetKey().GetKeyId() != id || len(out.GetSealedKey()) == 0) {
			err = status.Error(codes.Internal, "malformed enclave answer: SetKeyState")
		}
		return out.GetKey(), out.GetSealedKey(), nil, err
	})
}

// DisableKey implements signerv1.SignerServiceServer.
func (s *Service) DisableKey(ctx context.Context, r *signerv1.DisableKeyRequest) (*signerv1.DisableKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	k, err := s.setState(ctx, r.GetKeyId(), signerv1.KeyState_KEY_STATE_DISABLED)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key disabled", "key_id", r.GetKeyId())
	return &signerv1.DisableKeyResponse{Key: k}, nil
}

// EnableKey implements signerv1.SignerServiceServer.
func (s *Service) EnableKey(ctx context.Context, r *signerv1.EnableKeyRequest) (*signerv1.EnableKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	k, err := s.setState(ctx, r.GetKeyId(), signerv1.KeyState_KEY_STATE_ENABLED)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key enabled", "key_id", r.GetKeyId())
	return &signerv1.EnableKeyResponse{Key: k}, nil
}

// RotateKey implements signerv1.SignerServiceServer. The old blob stays in
// place until the new one (under a new KEK) replaces it.
func (s *Service) RotateKey(ctx context.Context, r *signerv1.RotateKeyRequest) (*signerv1.RotateKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	k, err := s.reseal(ctx, r.GetKeyId(), func(cur *enclavev1.SealedBlobs) (*signerv1.Key, []byte, []byte, error) {
		var out enclavev1.RotateKeyResponse
		err := s.call(ctx, enclavev1.Method_METHOD_ROTATE_KEY, &enclavev1.RotateKeyRequest{
			KeyId: r.GetKeyId(), KmsKeyArn: r.GetKmsKeyArn(), Current: cur}, &out)
		if err == nil && (out.GetKey().GetKeyId() != r.GetKeyId() || len(out.GetSealedKey()) == 0 || len(out.GetSealedKek()) == 0) {
			err = status.Error(codes.Internal, "malformed enclave answer: RotateKey")
		}
		return out.GetKey(), out.GetSealedKey(), out.GetSealedKek(), err
	})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "key rotated", "key_id", r.GetKeyId(), "kek_id", k.GetSealing().GetKekId(),
		"kms_key_arn", k.GetSealing().GetKmsKeyArn())
	return &signerv1.RotateKeyResponse{Key: k}, nil
}

// DeleteKey implements signerv1.SignerServiceServer: the sealed key is
// removed from the store (all versions), then from the enclave's cache.
// Without the blob the key cannot be opened again.
func (s *Service) DeleteKey(ctx context.Context, r *signerv1.DeleteKeyRequest) (*signerv1.DeleteKeyResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := validKeyID(r.GetKeyId()); err != nil {
		return nil, err
	}
	derr := s.store.Delete(ctx, keyName(r.GetKeyId()))
	if derr != nil && !errors.Is(derr, store.ErrNotFound) {
		return nil, s.storeError(ctx, "delete key", derr)
	}
	// Also when the blob was already gone (a retry after a failed evict):
	// the enclave must drop the key and refuse it from now on.
	if err := s.call(ctx, enclavev1.Method_METHOD_EVICT_KEY, &enclavev1.EvictKeyRequest{KeyId: r.GetKeyId(), Deleted: true}, &enclavev1.EvictKeyResponse{}); err != nil {
		// The blob is gone; the enclave will not find the key after its
		// next restart either. Report the failure: the key may still sign
		// until then.
		s.log.ErrorContext(ctx, "key blob deleted but the enclave did not evict it", "key_id", r.GetKeyId(), "err", err)
		return nil, status.Errorf(codes.Unavailable, "key blob deleted, but the enclave could not be told to drop the key: %v", status.Convert(err).Message())
	}
	// When the blob was already gone, only a retry after a failed append
	// appends.
	if err := s.noteChange(ctx, derr == nil, &enclavev1.KeyChange{KeyId: r.GetKeyId(), Deleted: true}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, s.storeError(ctx, "delete key", derr)
	}
	s.log.InfoContext(ctx, "key deleted", "key_id", r.GetKeyId())
	return &signerv1.DeleteKeyResponse{}, nil
}

// signKeyID reads key_id (field 1) from an encoded SignRequest.
func signKeyID(b []byte) (id string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return ""
			}
			id, b = string(v), b[m:] // the last occurrence wins, as in protobuf
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return ""
		}
		b = b[m:]
	}
	return id
}
