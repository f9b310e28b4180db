// Package keyring is the only place in the enclave where plaintext private
// keys and KEKs live.
//
// Keys are sealed (package seal) under KEKs that only KMS can unwrap, and
// only for an attested enclave. The parent stores the sealed blobs and hands
// them back when a key is needed; the keyring opens them into a bounded,
// compact cache. Private key bytes leave the package only as the argument of
// the callback given to [Keyring.Use], which must not retain them. Evicted
// and deleted keys, and dropped KEKs, are zeroized.
//
// The cache is laid out for scale (DESIGN.md section 8): a map from the
// 16-byte key id to an index into one array of fixed-size slots, both free
// of pointers, so a million cached keys cost under 128 bytes each (a 72-byte
// slot and its index entry) and nothing for the garbage collector to scan.
package keyring

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Errors callers branch on. None carries key material.
var (
	// ErrNotLoaded means the key is not in the cache: the parent must hand
	// in its sealed blobs (LoadKeys) and retry.
	ErrNotLoaded = errors.New("key not loaded")
	// ErrDisabled means the key exists but may not sign.
	ErrDisabled = errors.New("key is disabled")
	// ErrUnknownAlgorithm means no signature scheme is registered for the
	// requested algorithm.
	ErrUnknownAlgorithm = errors.New("unknown algorithm")
	// ErrKMSKeyNotAllowed means a blob or request names a KMS key the
	// enclave was not configured to trust.
	ErrKMSKeyNotAllowed = errors.New("KMS key is not one this enclave trusts")
	// ErrMismatch means blobs do not belong together or to the request:
	// another key's blob, a KEK other than the one the key names, or a
	// public key that does not match the private key.
	ErrMismatch = errors.New("sealed blobs do not match")
	// ErrStale means a blob is older (lower generation) than the version of
	// the key this enclave has already seen.
	ErrStale = errors.New("sealed key is older than the version already loaded")
	// ErrFull means the KEK table cannot take a KEK; never expected with a
	// sane MaxKEKs.
	ErrFull = errors.New("KEK cache is full")
	// ErrClosed means the keyring was closed.
	ErrClosed = errors.New("keyring closed")
	// ErrDeleted means the key was deleted during this enclave's lifetime;
	// a blob of it is refused.
	ErrDeleted = errors.New("key was deleted")
	// ErrKEKMissing means a key's KEK is not loaded and no sealed KEK was
	// handed in with it.
	ErrKEKMissing = errors.New("the key's KEK is not loaded and no sealed KEK was given")
)

// KMS is what the keyring needs from AWS KMS. Implementations call KMS with
// Recipient (the enclave's attestation), so plaintext data keys exist only
// inside the enclave, and they report the ARN of the key KMS used.
type KMS interface {
	// GenerateDataKey returns a fresh 32-byte data key and its KMS
	// ciphertext, bound to encCtx.
	GenerateDataKey(ctx context.Context, kmsKeyARN string, encCtx map[string]string) (plaintext, ciphertext []byte, keyARN string, err error)
	// Decrypt unwraps a data key; encCtx must be the one it was made with.
	Decrypt(ctx context.Context, kmsKeyARN string, ciphertext []byte, encCtx map[string]string) (plaintext []byte, keyARN string, err error)
}

// Config configures a [Keyring].
type Config struct {
	// KMS unwraps and makes KEKs. Required.
	KMS KMS
	// KMSKeys are the ARNs of the KMS keys this enclave trusts. The first
	// seals new KEKs; all may open KEKs and be named by RotateKey. Required.
	KMSKeys []string
	// KEKMaxKeys starts a new KEK after this many keys (default 100000).
	KEKMaxKeys int
	// KEKMaxAge starts a new KEK after this age (default 30 days).
	KEKMaxAge time.Duration
	// MaxKeys bounds the key cache (default 4M); a full cache evicts a
	// random key, which is loaded again on its next use.
	MaxKeys int
	// MaxKEKs bounds the cache of unwrapped KEKs (default 4096).
	MaxKEKs int
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives operator logs (never key material).
	Logger *slog.Logger
}

const (
	flagEnabled  = 1 << iota // key may sign
	flagVerified             // public key checked against the private key
)

// slot is one cached key: 72 bytes, no pointers.
type slot struct {
	key   sign.Packed
	alg   uint8
	flags uint8
	_     [1]byte
	gen   uint32
}

// Slots live in fixed pages that never move: growing the cache allocates a
// page and copies nothing, so no stale copy of a private key is left to the
// garbage collector and a growing cache never stalls signers.
const (
	pageShift = 12
	pageSize  = 1 << pageShift // 4096 slots, 288 KiB
)

// deletedGen marks a deleted key in the generation floor.
const deletedGen = math.MaxUint32

// maxMarks bounds the generation floor and the disable marks, which a
// parent could otherwise grow without end (EvictKey of made-up ids). When
// full, an arbitrary mark makes room: the parent can drop them all anyway by
// restarting the enclave (docs/sealing.md, rollback).
const maxMarks = 1 << 16

// markLocked sets m[id] = v, making room in m if it is full.
func markLocked(m map[[16]byte]uint32, id [16]byte, v uint32) {
	if _, ok := m[id]; !ok && len(m) >= maxMarks {
		for k := range m { // map order is random
			delete(m, k)
			break
		}
	}
	m[id] = v
}

// kmsTimeout bounds one KEK unwrap, which may serve many callers.
const kmsTimeout = 30 * time.Second

// kek is an unwrapped KEK. Its plaintext exists only inside aead (Go gives
// no way to clear an AES key schedule); the copy KMS handed over is
// zeroized as soon as aead is made. A kek is never modified once shared.
type kek struct {
	id   [16]byte
	arn  string
	aead cipher.AEAD
	blob []byte // the SealedKEK as stored
	born time.Time
	keys atomic.Int64 // keys sealed under it by this enclave
}

// Keyring caches opened keys and seals new ones. It is safe for concurrent
// use.
type Keyring struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	index map[[16]byte]uint32
	pages [][]slot
	used  uint32   // slots handed out so far
	free  []uint32 // slots to reuse
	// floor remembers, for keys no longer cached, the highest generation
	// seen (only when above 1) or deletedGen, so that an older blob stays
	// refused after eviction for the rest of this enclave's life.
	floor map[[16]byte]uint32
	// disabledBelow remembers, per key, the generation of a disabled blob
	// this enclave sealed, whose store write may not have landed: a blob
	// older than it loads disabled, so a disable holds even after the
	// cached key is evicted. It is dropped once that generation is cached.
	disabledBelow map[[16]byte]uint32
	// evictions counts EvictAll calls: a load that began before one is
	// refused (ErrStale).
	evictions uint64
	keks      map[[16]byte]*kek
	current   map[string]*kek // per KMS key ARN: the KEK new seals go under
	closed    bool

	unwrap   singleflight.Group
	newKEK   sync.Mutex
	kmsCalls atomic.Uint64
}

// New checks cfg and returns an empty keyring.
func New(cfg Config) (*Keyring, error) {
	if cfg.KMS == nil {
		return nil, errors.New("keyring: KMS is required")
	}
	if len(cfg.KMSKeys) == 0 {
		return nil, errors.New("keyring: at least one KMS key ARN is required")
	}
	for _, a := range cfg.KMSKeys {
		if !ValidKeyARN(a) {
			return nil, fmt.Errorf("keyring: %q is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)", a)
		}
	}
	if cfg.KEKMaxKeys <= 0 {
		cfg.KEKMaxKeys = 100000
	}
	if cfg.KEKMaxAge <= 0 {
		cfg.KEKMaxAge = 30 * 24 * time.Hour
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 4 << 20
	}
	if cfg.MaxKEKs <= 0 {
		cfg.MaxKEKs = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Keyring{
		cfg:           cfg,
		log:           cfg.Logger,
		index:         make(map[[16]byte]uint32),
		floor:         make(map[[16]byte]uint32),
		disabledBelow: make(map[[16]byte]uint32),
		keks:          make(map[[16]byte]*kek),
		current:       make(map[string]*kek),
	}, nil
}

// ValidKeyARN reports whether s looks like a KMS key ARN,
// arn:PARTITION:kms:REGION:ACCOUNT:key/ID. Aliases are not accepted: the
// enclave compares the ARNs KMS reports with these exactly.
func ValidKeyARN(s string) bool {
	parts := strings.Split(s, ":")
	return len(s) < 2048 && len(parts) == 6 && parts[0] == "arn" && parts[1] != "" && parts[2] == "kms" &&
		parts[4] != "" && strings.HasPrefix(parts[5], "key/") && len(parts[5]) > len("key/")
}

func (r *Keyring) allowed(arn string) bool { return slices.Contains(r.cfg.KMSKeys, arn) }

// KMSCalls reports how many KMS calls the keyring has made.
func (r *Keyring) KMSCalls() uint64 { return r.kmsCalls.Load() }

// KEKs reports the number of unwrapped KEKs held.
func (r *Keyring) KEKs() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.keks)
}

// Len reports the number of cached keys.
func (r *Keyring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.index)
}

// Info describes a key from its authenticated header.
type Info struct {
	Header *sealedv1.SealedKeyHeader
	// KMSKeyARN is the KMS key of the KEK the key is sealed under.
	KMSKeyARN string
}

// Created is the result of [Keyring.Create].
type Created struct {
	Info
	// SealedKey and SealedKEK are the blobs the parent must store, the KEK
	// first.
	SealedKey, SealedKEK []byte
}

// Create generates a key of the given algorithm, seals it under the current
// KEK (starting a new KEK through KMS when needed) and caches it.
func (r *Keyring) Create(ctx context.Context, alg signerv1.Algorithm, labels map[string]string) (*Created, error) {
	sc, ok := sign.Lookup(alg)
	if !ok {
		return nil, fmt.Errorf("%w: %v", ErrUnknownAlgorithm, alg)
	}
	k, err := r.currentKEK(ctx, r.cfg.KMSKeys[0], [16]byte{})
	if err != nil {
		return nil, err
	}
	priv, pub, err := sc.Generate()
	if err != nil {
		return nil, err
	}
	defer sign.Zero(priv)
	id, err := seal.NewID(seal.KeyIDPrefix)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now().UnixMilli()
	hdr := &sealedv1.SealedKeyHeader{
		KeyId: id, Algorithm: alg, PublicKey: pub, KekId: seal.FormatID(seal.KEKIDPrefix, k.id),
		Labels: labels, State: signerv1.KeyState_KEY_STATE_ENABLED,
		CreatedAtUnixMs: now, SealedAtUnixMs: now, Generation: 1,
	}
	blob, err := seal.SealKey(k.aead, hdr, priv)
	if err != nil {
		return nil, err
	}
	var s slot
	defer s.key.Zero()
	if err := sc.Pack(priv, pub, &s.key); err != nil {
		return nil, err
	}
	s.alg = uint8(alg)
	s.flags = flagEnabled | flagVerified
	s.gen = 1
	kid, _ := seal.ParseID(seal.KeyIDPrefix, id)
	r.mu.Lock()
	err = r.insertLocked(kid, &s)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &Created{Info: Info{Header: hdr, KMSKeyARN: k.arn}, SealedKey: blob, SealedKEK: k.blob}, nil
}

// currentKEK returns the KEK new seals under arn go under, counting one
// more key for it. It makes a new one through KMS when there is none, the
// current one is full or old, or it is avoid (a rotation must change KEK).
func (r *Keyring) currentKEK(ctx context.Context, arn string, avoid [16]byte) (*kek, error) {
	r.newKEK.Lock()
	defer r.newKEK.Unlock()
	r.mu.RLock()
	closed, k := r.closed, r.current[arn]
	r.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if k != nil && k.id != avoid && k.keys.Load() < int64(r.cfg.KEKMaxKeys) && r.cfg.Now().Sub(k.born) < r.cfg.KEKMaxAge {
		k.keys.Add(1)
		return k, nil
	}
	k, err := r.makeKEK(ctx, arn)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.current[arn] = k
	if k, err = r.addKEKLocked(k); err != nil {
		return nil, err
	}
	k.keys.Add(1)
	r.log.InfoContext(ctx, "new KEK", "kek_id", seal.FormatID(seal.KEKIDPrefix, k.id), "kms_key_arn", k.arn)
	return k, nil
}

// makeKEK asks KMS for a new data key under arn.
func (r *Keyring) makeKEK(ctx context.Context, arn string) (*kek, error) {
	if !r.allowed(arn) {
		return nil, fmt.Errorf("%w: %s", ErrKMSKeyNotAllowed, arn)
	}
	id, err := seal.NewID(seal.KEKIDPrefix)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	encCtx := seal.KEKContext(id, now.UnixMilli())
	r.kmsCalls.Add(1)
	pt, ct, gotARN, err := r.cfg.KMS.GenerateDataKey(ctx, arn, encCtx)
	if err != nil {
		return nil, fmt.Errorf("new KEK: %w", err)
	}
	defer clear(pt)
	if gotARN != arn {
		return nil, fmt.Errorf("%w: KMS answered for %s, asked %s", ErrKMSKeyNotAllowed, gotARN, arn)
	}
	blob, err := seal.MarshalKEK(&sealedv1.SealedKEK{
		KekId: id, KmsKeyArn: gotARN, EncryptionContext: encCtx, KmsCiphertext: ct, CreatedAtUnixMs: now.UnixMilli(),
	})
	if err != nil {
		return nil, err
	}
	return newKEK(id, gotARN, pt, blob, now)
}

// newKEK makes a kek from KMS's plaintext, which the caller zeroizes.
func newKEK(id, arn string, secret, blob []byte, born time.Time) (*kek, error) {
	bid, ok := seal.ParseID(seal.KEKIDPrefix, id)
	if !ok {
		return nil, fmt.Errorf("%w: bad KEK id", seal.ErrMalformed)
	}
	if len(secret) != seal.KEKSize {
		return nil, fmt.Errorf("KMS returned a %d-byte data key, want %d", len(secret), seal.KEKSize)
	}
	aead, err := seal.AEAD(secret)
	if err != nil {
		return nil, err
	}
	return &kek{id: bid, arn: arn, aead: aead, blob: blob, born: born}, nil
}

// addKEKLocked registers k and returns the registered KEK with its id (k,
// or one registered before). When the table is full another KEK that is
// nobody's current one is dropped from it; callers holding it keep a
// working copy, and keys already opened stay usable.
func (r *Keyring) addKEKLocked(k *kek) (*kek, error) {
	if r.closed {
		return nil, ErrClosed
	}
	if old, ok := r.keks[k.id]; ok {
		return old, nil
	}
	if len(r.keks) >= r.cfg.MaxKEKs {
		for id, v := range r.keks { // map order is random
			if r.current[v.arn] != v {
				delete(r.keks, id)
				break
			}
		}
		if len(r.keks) >= r.cfg.MaxKEKs {
			return nil, ErrFull
		}
	}
	r.keks[k.id] = k
	return k, nil
}

// kekFor returns the unwrapped KEK with the given id, unwrapping sealedKEK
// through KMS if needed. Concurrent calls for one KEK make one KMS call,
// which is bounded by its own timeout: one caller giving up does not fail
// the others.
func (r *Keyring) kekFor(ctx context.Context, id [16]byte, sealedKEK []byte) (*kek, error) {
	r.mu.RLock()
	k, ok := r.keks[id]
	r.mu.RUnlock()
	if ok {
		return k, nil
	}
	if len(sealedKEK) == 0 {
		return nil, ErrKEKMissing
	}
	ch := r.unwrap.DoChan(string(id[:]), func() (any, error) {
		r.mu.RLock()
		k, ok := r.keks[id]
		r.mu.RUnlock()
		if ok {
			return k, nil
		}
		sk, err := seal.ParseKEK(sealedKEK)
		if err != nil {
			return nil, err
		}
		if got, _ := seal.ParseID(seal.KEKIDPrefix, sk.KekId); got != id {
			return nil, fmt.Errorf("%w: sealed KEK %s is not the KEK the key names", ErrMismatch, sk.KekId)
		}
		if !r.allowed(sk.KmsKeyArn) {
			return nil, fmt.Errorf("%w: %s", ErrKMSKeyNotAllowed, sk.KmsKeyArn)
		}
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kmsTimeout)
		defer cancel()
		r.kmsCalls.Add(1)
		// The context goes to KMS as recomputed from the id, never as
		// stored: ParseKEK already refused a blob whose stored one differs.
		pt, arn, err := r.cfg.KMS.Decrypt(kctx, sk.KmsKeyArn, sk.KmsCiphertext, seal.KEKContext(sk.KekId, sk.CreatedAtUnixMs))
		if err != nil {
			return nil, fmt.Errorf("unwrap KEK %s: %w", sk.KekId, err)
		}
		defer clear(pt)
		if arn != sk.KmsKeyArn {
			return nil, fmt.Errorf("%w: KMS decrypted with %s", ErrKMSKeyNotAllowed, arn)
		}
		k, err = newKEK(sk.KekId, arn, pt, slices.Clone(sealedKEK), time.UnixMilli(sk.CreatedAtUnixMs))
		if err != nil {
			return nil, err
		}
		// An unwrapped KEK never becomes a current one: new keys go under
		// a KEK this enclave made, whose age and count it knows.
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.addKEKLocked(k)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*kek), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// slotLocked returns slot i.
func (r *Keyring) slotLocked(i uint32) *slot {
	return &r.pages[i>>pageShift][i&(pageSize-1)]
}

// checkGenLocked refuses generation gen of key id when this enclave has
// seen a newer one or the key's deletion.
func (r *Keyring) checkGenLocked(id [16]byte, gen uint64) error {
	if i, ok := r.index[id]; ok && uint64(r.slotLocked(i).gen) > gen {
		return ErrStale
	}
	switch f, ok := r.floor[id]; {
	case !ok:
	case f == deletedGen:
		return ErrDeleted
	case uint64(f) > gen:
		return ErrStale
	}
	return nil
}

// dropLocked removes slot i (key id) from the cache, zeroizing it and
// remembering its generation when that is above 1.
func (r *Keyring) dropLocked(id [16]byte, i uint32) {
	s := r.slotLocked(i)
	if s.gen > 1 && r.floor[id] < s.gen {
		markLocked(r.floor, id, s.gen)
	}
	*s = slot{}
	delete(r.index, id)
	r.free = append(r.free, i)
}

// insertLocked puts s into the cache under id, replacing an older
// generation and evicting a random key when full. It is on the bulk-load
// path: one index lookup, and a floor lookup only when the floor holds
// anything.
func (r *Keyring) insertLocked(id [16]byte, s *slot) error {
	if r.closed {
		return ErrClosed
	}
	if len(r.disabledBelow) > 0 {
		if m, ok := r.disabledBelow[id]; ok {
			if s.gen < m {
				s.flags &^= flagEnabled
			} else {
				delete(r.disabledBelow, id) // the cached generation carries it
			}
		}
	}
	if i, ok := r.index[id]; ok {
		old := r.slotLocked(i)
		switch {
		case s.gen < old.gen:
			return ErrStale
		case s.gen > old.gen:
			*old = *s
		}
		return nil
	}
	if len(r.floor) > 0 {
		if f, ok := r.floor[id]; ok {
			switch {
			case f == deletedGen:
				return ErrDeleted
			case s.gen < f:
				return ErrStale
			}
			delete(r.floor, id) // the cached slot enforces it now
		}
	}
	if len(r.free) == 0 && int(r.used) >= r.cfg.MaxKeys {
		for vid, vi := range r.index { // map order is random
			r.dropLocked(vid, vi)
			break
		}
	}
	var i uint32
	if n := len(r.free); n > 0 {
		i, r.free = r.free[n-1], r.free[:n-1]
	} else {
		i = r.used
		r.used++
		if int(i>>pageShift) == len(r.pages) {
			r.pages = append(r.pages, make([]slot, pageSize))
		}
	}
	*r.slotLocked(i) = *s
	r.index[id] = i
	return nil
}

// Blobs are a key's sealed blobs as the parent handed them in.
type Blobs struct {
	// KeyID is the key the caller wants; a blob of another key is refused.
	KeyID                string
	SealedKey, SealedKEK []byte
}

// Load opens the given keys into the cache, in parallel. It returns one
// error per item (nil = loaded). Each KEK is unwrapped once.
func (r *Keyring) Load(ctx context.Context, items []Blobs) []error {
	errs := make([]error, len(items))
	workers := min(runtime.GOMAXPROCS(0), (len(items)+255)/256)
	if workers <= 1 {
		r.loadRange(ctx, items, errs)
		return errs
	}
	var wg sync.WaitGroup
	chunk := (len(items) + workers - 1) / workers
	for lo := 0; lo < len(items); lo += chunk {
		hi := min(lo+chunk, len(items))
		wg.Go(func() { r.loadRange(ctx, items[lo:hi], errs[lo:hi]) })
	}
	wg.Wait()
	return errs
}

type opened struct {
	id  [16]byte
	at  int
	key slot
}

// loadRange opens items and inserts them in batches, so the write lock is
// taken once per batch rather than once per key.
func (r *Keyring) loadRange(ctx context.Context, items []Blobs, errs []error) {
	const batch = 256
	var (
		f       seal.Fast
		pt      = make([]byte, 0, 64)
		aadBuf  = make([]byte, 0, 512)
		pending = make([]opened, 0, batch)
		st      = loadState{failed: map[[16]byte]error{}}
	)
	defer func() { clear(pt[:cap(pt)]) }()
	// A blob read before an EvictAll may be older than a change the
	// enclave was not told of one by one: such a load is refused, and the
	// parent reads the blob again.
	r.mu.RLock()
	epoch := r.evictions
	r.mu.RUnlock()
	flush := func() {
		r.mu.Lock()
		for j := range pending {
			p := &pending[j]
			if r.evictions != epoch {
				errs[p.at] = ErrStale
			} else {
				errs[p.at] = r.insertLocked(p.id, &p.key)
			}
			p.key.key.Zero()
		}
		r.mu.Unlock()
		pending = pending[:0]
	}
	for i := range items {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		pending = append(pending, opened{at: i})
		p := &pending[len(pending)-1]
		var err error
		pt, aadBuf, err = r.open(ctx, items[i], &f, pt, aadBuf, &p.key, &st)
		if err != nil {
			errs[i] = err
			p.key.key.Zero()
			pending = pending[:len(pending)-1]
			continue
		}
		p.id = f.KeyID
		if len(pending) == batch {
			flush()
		}
	}
	flush()
}

// open parses and decrypts one key into s. pt and aadBuf are scratch
// buffers, returned for reuse; pt is zeroized before open returns.
// loadState is what one load worker remembers between keys.
type loadState struct {
	// failed holds KEKs that could not be unwrapped during this load, so
	// that keys sharing one do not each retry KMS.
	failed map[[16]byte]error
	// last is the KEK of the previous key: keys come in runs under one KEK,
	// and this saves a locked lookup per key.
	last *kek
}

func (r *Keyring) open(ctx context.Context, b Blobs, f *seal.Fast, pt, aadBuf []byte, s *slot, st *loadState) ([]byte, []byte, error) {
	if err := seal.ParseFast(b.SealedKey, f); err != nil {
		return pt, aadBuf, err
	}
	if want, ok := seal.ParseID(seal.KeyIDPrefix, b.KeyID); !ok || want != f.KeyID {
		return pt, aadBuf, fmt.Errorf("%w: blob is for another key", ErrMismatch)
	}
	sc, ok := sign.Lookup(f.Algorithm)
	if !ok {
		return pt, aadBuf, fmt.Errorf("%w: %v", ErrUnknownAlgorithm, f.Algorithm)
	}
	if f.Generation == 0 || f.Generation >= deletedGen {
		return pt, aadBuf, fmt.Errorf("%w: generation %d out of range", seal.ErrMalformed, f.Generation)
	}
	k := st.last
	if k == nil || k.id != f.KEKID {
		if err, ok := st.failed[f.KEKID]; ok {
			return pt, aadBuf, err
		}
		var err error
		if k, err = r.kekFor(ctx, f.KEKID, b.SealedKEK); err != nil {
			if !errors.Is(err, ErrKEKMissing) && ctx.Err() == nil {
				st.failed[f.KEKID] = err
			}
			return pt, aadBuf, err
		}
		st.last = k
	}
	out, aadBuf, err := f.Open(k.aead, pt, aadBuf)
	if err != nil {
		return pt, aadBuf, err
	}
	defer clear(out)
	if len(out) != sc.PrivateKeySize() {
		return out, aadBuf, fmt.Errorf("%w: private key has %d bytes", ErrMismatch, len(out))
	}
	if err := sc.Pack(out, f.PublicKey, &s.key); err != nil {
		return out, aadBuf, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	s.alg = uint8(f.Algorithm)
	s.flags = 0
	if f.State == signerv1.KeyState_KEY_STATE_ENABLED {
		s.flags |= flagEnabled
	}
	s.gen = uint32(f.Generation)
	return out, aadBuf, nil
}

// Use runs fn with the key's scheme and private key, and with its public
// key when withPub is set (nil otherwise: rebuilding an ECDSA public key
// from its compressed form costs a square root, about a quarter of a
// signature, when the sign package has not cached it). The public key is checked against the private key on the
// key's first use. fn must not retain priv, which is zeroized when fn
// returns. ctx only names the request in the keyring's log lines.
func (r *Keyring) Use(ctx context.Context, id string, withPub bool, fn func(sc sign.Scheme, priv, pub []byte) error) (signerv1.Algorithm, error) {
	bid, ok := seal.ParseID(seal.KeyIDPrefix, id)
	if !ok {
		return 0, ErrNotLoaded
	}
	var s slot
	defer s.key.Zero()
	r.mu.RLock()
	i, ok := r.index[bid]
	if ok {
		s = *r.slotLocked(i)
	}
	r.mu.RUnlock()
	if !ok {
		return 0, ErrNotLoaded
	}
	alg := signerv1.Algorithm(s.alg)
	if s.flags&flagEnabled == 0 {
		return alg, ErrDisabled
	}
	sc, ok := sign.Lookup(alg)
	if !ok {
		return alg, fmt.Errorf("%w: %v", ErrUnknownAlgorithm, alg)
	}
	var buf [64]byte
	defer clear(buf[:])
	priv := sc.Unpack(&s.key, buf[:0])
	if s.flags&flagVerified == 0 {
		if err := r.verify(ctx, id, bid, i, &s, sc, priv); err != nil {
			return alg, err
		}
	}
	var pub []byte
	if withPub {
		var err error
		if pub, err = sc.UnpackPublic(&s.key); err != nil {
			return alg, err
		}
	}
	return alg, fn(sc, priv, pub)
}

// verify checks, on a key's first use, that the public key its sealed
// header named is the private key's, and marks the slot verified. A
// mismatch evicts the key.
func (r *Keyring) verify(ctx context.Context, id string, bid [16]byte, i uint32, s *slot, sc sign.Scheme, priv []byte) error {
	derived, err := sc.PublicKey(priv)
	if err != nil {
		return err
	}
	var check sign.Packed
	defer check.Zero()
	mismatch := sc.Pack(priv, derived, &check) != nil || check.Pub != s.key.Pub
	r.mu.Lock()
	defer r.mu.Unlock()
	// Act only on the version checked: another may have replaced it.
	if j, ok := r.index[bid]; ok && j == i && r.slotLocked(i).gen == s.gen {
		if mismatch {
			r.dropLocked(bid, i)
		} else {
			r.slotLocked(i).flags |= flagVerified
		}
	}
	if mismatch {
		r.log.ErrorContext(ctx, "sealed public key does not match its private key; evicted", "key_id", id)
		return fmt.Errorf("%w: public key in the sealed header is not the key's", ErrMismatch)
	}
	return nil
}

// Describe opens a key's blobs to authenticate its header and returns it;
// the key is not cached. Only the KEK may need a KMS call.
func (r *Keyring) Describe(ctx context.Context, b Blobs) (*Info, error) {
	k, err := seal.ParseKey(b.SealedKey)
	if err != nil {
		return nil, err
	}
	if b.KeyID != "" && k.Header.KeyId != b.KeyID {
		return nil, fmt.Errorf("%w: blob is for another key", ErrMismatch)
	}
	kid, _ := seal.ParseID(seal.KEKIDPrefix, k.Header.KekId)
	kk, err := r.kekFor(ctx, kid, b.SealedKEK)
	if err != nil {
		return nil, err
	}
	priv, err := k.Open(kk.aead, nil)
	clear(priv)
	if err != nil {
		return nil, err
	}
	return &Info{Header: k.Header, KMSKeyARN: kk.arn}, nil
}

// openFull opens a key completely, checking that it is the key id and that
// the KEK blob is the one it names. The caller zeroizes the private key.
func (r *Keyring) openFull(ctx context.Context, id string, b Blobs) (*seal.Key, *kek, []byte, error) {
	k, err := seal.ParseKey(b.SealedKey)
	if err != nil {
		return nil, nil, nil, err
	}
	if k.Header.KeyId != id || (b.KeyID != "" && b.KeyID != id) {
		return nil, nil, nil, fmt.Errorf("%w: blob is for another key", ErrMismatch)
	}
	kid, _ := seal.ParseID(seal.KEKIDPrefix, k.Header.KekId)
	kk, err := r.kekFor(ctx, kid, b.SealedKEK)
	if err != nil {
		return nil, nil, nil, err
	}
	priv, err := k.Open(kk.aead, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*seal.Key, *kek, []byte, error) {
		clear(priv)
		return nil, nil, nil, err
	}
	sc, ok := sign.Lookup(k.Header.Algorithm)
	if !ok {
		return fail(fmt.Errorf("%w: %v", ErrUnknownAlgorithm, k.Header.Algorithm))
	}
	pub, err := sc.PublicKey(priv)
	if err != nil || string(pub) != string(k.Header.PublicKey) {
		return fail(fmt.Errorf("%w: public key in the sealed header is not the key's", ErrMismatch))
	}
	if k.Header.Generation == 0 || k.Header.Generation >= deletedGen-1 {
		return fail(fmt.Errorf("%w: generation %d out of range", seal.ErrMalformed, k.Header.Generation))
	}
	bid, _ := seal.ParseID(seal.KeyIDPrefix, id)
	r.mu.RLock()
	err = r.checkGenLocked(bid, k.Header.Generation)
	r.mu.RUnlock()
	if err != nil {
		return fail(err)
	}
	return k, kk, priv, nil
}

// Resealed is the result of [Keyring.SetState] and [Keyring.Rotate]: blobs
// for the parent to store. The cache is not changed: the parent loads the
// new blob once it is stored, so the cache never runs ahead of the store.
type Resealed struct {
	Info
	SealedKey []byte
	// SealedKEK is set by Rotate: a new KEK to store before the key.
	SealedKEK []byte
	// Unchanged is set by SetState when the key already had the state
	// asked for: SealedKey is then the current blob, as it was handed in.
	Unchanged bool
}

// SetState re-seals a key (given by its current blobs) with a new state and
// the next generation, under the same KEK. A key that already has the state
// is not re-sealed: its current blob comes back with Unchanged set, so that
// repeating a disable (a script run twice in an incident) rewrites nothing.
func (r *Keyring) SetState(ctx context.Context, id string, state signerv1.KeyState, b Blobs) (*Resealed, error) {
	k, kk, priv, err := r.openFull(ctx, id, b)
	if err != nil {
		return nil, err
	}
	defer clear(priv)
	bid, _ := seal.ParseID(seal.KeyIDPrefix, id)
	unchanged := k.Header.State == state
	switch {
	case state != signerv1.KeyState_KEY_STATE_ENABLED:
		// Disabling fails closed: the cached key stops signing now, before
		// the new blob is stored, and an older blob loaded after an
		// eviction loads disabled; enabling waits for the store.
		r.mu.Lock()
		if i, ok := r.index[bid]; ok {
			r.slotLocked(i).flags &^= flagEnabled
		}
		if !unchanged && k.Header.Generation < deletedGen-1 {
			markLocked(r.disabledBelow, bid, uint32(k.Header.Generation)+1)
		}
		r.mu.Unlock()
	case unchanged:
		// The current blob says enabled: a disable whose blob was never
		// stored is undone, in the cache too.
		r.mu.Lock()
		delete(r.disabledBelow, bid)
		if i, ok := r.index[bid]; ok && uint64(r.slotLocked(i).gen) == k.Header.Generation {
			r.slotLocked(i).flags |= flagEnabled
		}
		r.mu.Unlock()
	}
	if unchanged {
		return &Resealed{Info: Info{Header: k.Header, KMSKeyARN: kk.arn}, SealedKey: b.SealedKey, Unchanged: true}, nil
	}
	h := cloneHeader(k.Header)
	h.State = state
	h.Generation++
	h.SealedAtUnixMs = r.cfg.Now().UnixMilli()
	blob, err := seal.SealKey(kk.aead, h, priv)
	if err != nil {
		return nil, err
	}
	return &Resealed{Info: Info{Header: h, KMSKeyARN: kk.arn}, SealedKey: blob}, nil
}

// Rotate re-seals a key under another KEK, from kmsKeyARN (the default KMS
// key when empty): the KMS key's current KEK for rotations, or a new one
// when that is the key's own KEK. The private key does not change. Many
// keys rotated together share a KEK, as created keys do.
func (r *Keyring) Rotate(ctx context.Context, id, kmsKeyARN string, b Blobs) (*Resealed, error) {
	if kmsKeyARN == "" {
		kmsKeyARN = r.cfg.KMSKeys[0]
	}
	if !r.allowed(kmsKeyARN) {
		return nil, fmt.Errorf("%w: %s", ErrKMSKeyNotAllowed, kmsKeyARN)
	}
	k, old, priv, err := r.openFull(ctx, id, b)
	if err != nil {
		return nil, err
	}
	defer clear(priv)
	nk, err := r.currentKEK(ctx, kmsKeyARN, old.id)
	if err != nil {
		return nil, err
	}
	h := cloneHeader(k.Header)
	h.KekId = seal.FormatID(seal.KEKIDPrefix, nk.id)
	h.Generation++
	h.SealedAtUnixMs = r.cfg.Now().UnixMilli()
	blob, err := seal.SealKey(nk.aead, h, priv)
	if err != nil {
		return nil, err
	}
	return &Resealed{Info: Info{Header: h, KMSKeyARN: nk.arn}, SealedKey: blob, SealedKEK: nk.blob}, nil
}

func cloneHeader(h *sealedv1.SealedKeyHeader) *sealedv1.SealedKeyHeader {
	return &sealedv1.SealedKeyHeader{
		Version: h.Version, KeyId: h.KeyId, Algorithm: h.Algorithm, PublicKey: slices.Clone(h.PublicKey),
		KekId: h.KekId, Labels: maps.Clone(h.Labels), State: h.State, CreatedAtUnixMs: h.CreatedAtUnixMs,
		SealedAtUnixMs: h.SealedAtUnixMs, Generation: h.Generation,
	}
}

// Evict drops a key from the cache and zeroizes it. With deleted set, the
// key is also refused for the rest of this enclave's life, whatever blob is
// handed in: a load racing the deletion cannot bring it back.
func (r *Keyring) Evict(id string, deleted bool) {
	bid, ok := seal.ParseID(seal.KeyIDPrefix, id)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.index[bid]; ok {
		r.dropLocked(bid, i)
	}
	if deleted {
		markLocked(r.floor, bid, deletedGen)
		delete(r.disabledBelow, bid)
	}
}

// Supersede applies a change made through another parent sharing the key
// store: generation gen of key id was stored. A cached copy older than gen
// is dropped, zeroized, and no blob older than gen loads again (ErrStale),
// so the key's next use loads the stored state. A cached copy at gen or
// newer stays. It reports whether a cached copy was dropped.
func (r *Keyring) Supersede(id string, gen uint64) bool {
	bid, ok := seal.ParseID(seal.KeyIDPrefix, id)
	if !ok {
		return false
	}
	g := uint32(min(gen, deletedGen-1))
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := false
	if i, ok := r.index[bid]; ok {
		if r.slotLocked(i).gen >= g {
			return false
		}
		r.dropLocked(bid, i)
		dropped = true
	}
	if f := r.floor[bid]; g > 1 && f < g { // a deletion mark (the maximum) stays
		markLocked(r.floor, bid, g)
	}
	return dropped
}

// EvictAll drops every cached key, zeroizing it, for a parent that cannot
// tell which changes made through other parents this enclave missed, and
// refuses (ErrStale) the keys of loads already running, whose blobs may be
// older than such a change. It returns how many keys were dropped. Their
// generations go to the floor while it has room: existing marks, deletions
// among them, are never pushed out for them.
func (r *Keyring) EvictAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evictions++
	n := len(r.index)
	for id, i := range r.index {
		s := r.slotLocked(i)
		if s.gen > 1 && len(r.floor) < maxMarks && r.floor[id] < s.gen {
			r.floor[id] = s.gen
		}
		*s = slot{}
		delete(r.index, id)
		r.free = append(r.free, i)
	}
	return n
}

// Close zeroizes every cached key and drops every KEK.
func (r *Keyring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pages {
		clear(p)
	}
	r.pages, r.free, r.used = nil, nil, 0
	clear(r.index)
	clear(r.keks)
	clear(r.current)
	r.closed = true
	return nil
}
