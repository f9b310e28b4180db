package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
)

// The change log carries key changes between parents sharing a key store.
// Each enclave caches the keys it opened; a key disabled, enabled, rotated
// or deleted through one parent would otherwise keep its old state in the
// other enclaves' caches until they happened to reload it.
//
// Every parent that re-seals or deletes a key appends an entry to the log
// once the store holds the change: changes/<sequence number, 20 digits>,
// holding an encoded enclavev1.KeyChange (key id, new generation or
// deleted). An entry is claimed with a put-if-absent, so two parents never
// write the same number, and a number is only taken after the one before
// it was seen: the log has no holes. Each parent reads the entries after
// its enclave's position every freeze poll ([Service.SyncChanges]) and
// hands them to the enclave, which drops a cached copy older than the
// change and refuses older blobs from then on. An enclave that is too far
// behind (more than changeCatchUp entries, or entries pruned before it saw
// them) drops its whole cache instead and loads keys afresh on their next
// use.
//
// The log keeps the last changeKeep entries: the parent that writes entry
// n, a multiple of changePruneEvery, deletes in the background the entries
// that fell out of it. No clock is involved.

const (
	changesPrefix = "changes/"
	// changeKeep is how many entries the log keeps.
	changeKeep = 10000
	// changePruneEvery is how often (in entries) the writer prunes.
	changePruneEvery = 100
	// changeCatchUp is the most entries a sync reads one by one; an
	// enclave further behind drops its cache instead.
	changeCatchUp = 256
	// changeClaims bounds the put-if-absent attempts of one append.
	changeClaims = 16
)

// changeLimits are the constants above; tests shrink them.
type changeLimits struct{ keep, pruneEvery, catchUp uint64 }

// errChangesStale refuses signing when the change log has not been read for
// too long.
var errChangesStale = status.Error(codes.Unavailable, "key changes made through other parents could not be read from the key store lately, so a key disabled or deleted through another parent could still sign here; signing resumes when the store answers again")

func changeName(seq uint64) string { return fmt.Sprintf("%s%020d", changesPrefix, seq) }

// maxChangeSeq bounds sequence numbers: an entry above it (anything that
// can write to the store could add one) is not nitrosigner's, and must not
// move every reader to the end of the number space.
const maxChangeSeq = 1 << 62

// parseChangeName returns the sequence number of a log entry's name.
func parseChangeName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, changesPrefix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0 && n <= maxChangeSeq
}

// decodeChange parses a log entry. The store is not trusted: a malformed
// entry is refused, never half-applied.
func decodeChange(b []byte) (*enclavev1.KeyChange, error) {
	c := new(enclavev1.KeyChange)
	if err := proto.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("malformed: %w", err)
	}
	if err := validKeyID(c.GetKeyId()); err != nil {
		return nil, errors.New("malformed: no valid key id")
	}
	switch {
	case c.GetDeleted() && c.GetGeneration() != 0:
		return nil, errors.New("malformed: a deletion with a generation")
	case !c.GetDeleted() && c.GetGeneration() == 0:
		return nil, errors.New("malformed: neither a generation nor a deletion")
	}
	return c, nil
}

// changeLog is a Service's view of the log.
type changeLog struct {
	// appending (a one-slot semaphore, so that waiting honours contexts)
	// serializes this parent's appends: they would only race each other
	// for the same numbers.
	appending chan struct{}
	// syncMu serializes syncs and guards read, when the log was last
	// listed.
	syncMu sync.Mutex
	read   readClock
	// mu guards next, where the next append tries first (0: unknown);
	// pruneBelow, below which entries are to go, and pruned, below which
	// they went; pruning, set while a prune runs; unrecorded.
	mu                 sync.Mutex
	next               uint64
	pruneBelow, pruned uint64
	pruning            bool
	lim                changeLimits
	// epoch counts the syncs that made the enclave drop every cached key;
	// a key load that saw it change reads the key again ([Service.load]).
	epoch atomic.Uint64
	// unrecorded holds keys whose change could not be appended, so that a
	// retry that changes nothing still appends it. Bounded by
	// maxUnrecorded.
	unrecorded map[string]struct{}
}

// maxUnrecorded bounds changeLog.unrecorded; when full, an arbitrary key
// makes room.
const maxUnrecorded = 4096

func (c *changeLog) markUnrecorded(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unrecorded == nil {
		c.unrecorded = make(map[string]struct{})
	}
	if len(c.unrecorded) >= maxUnrecorded {
		for k := range c.unrecorded {
			delete(c.unrecorded, k)
			break
		}
	}
	c.unrecorded[id] = struct{}{}
}

// takeUnrecorded reports whether id's change still has to be appended, and
// forgets it (a failed append marks it again).
func (c *changeLog) takeUnrecorded(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.unrecorded[id]
	delete(c.unrecorded, id)
	return ok
}

// seen notes that the log holds entries up to seq.
func (c *changeLog) seen(seq uint64) {
	c.mu.Lock()
	c.next = max(c.next, seq+1)
	c.mu.Unlock()
}

// recordChange appends c to the log. It is called after the store holds
// the change; its error means that other parents may not learn of it.
func (s *Service) recordChange(ctx context.Context, c *enclavev1.KeyChange) error {
	b, err := proto.Marshal(c)
	if err != nil {
		return err
	}
	select {
	case s.changes.appending <- struct{}{}:
		defer func() { <-s.changes.appending }()
	case <-ctx.Done():
		return fmt.Errorf("waiting for this parent's other appends: %w", ctx.Err())
	}
	// Where this parent last saw the log end is only a hint: the log may
	// have moved on by more than it keeps, and a number it pruned must not
	// be claimed again (every reader is past it). So list from there.
	s.changes.mu.Lock()
	hint := s.changes.next
	s.changes.mu.Unlock()
	last, err := s.lastChange(ctx, max(hint, 1)-1)
	if err != nil {
		return err
	}
	next := last + 1
	for range changeClaims {
		_, err := s.store.Put(ctx, changeName(next), b, store.Cond{IfAbsent: true})
		if errors.Is(err, store.ErrExists) {
			// Another parent took it: go on after the last entry.
			last, lerr := s.lastChange(ctx, next)
			if lerr != nil {
				return lerr
			}
			next = max(next, last) + 1
			continue
		}
		if err != nil {
			return err
		}
		s.changes.mu.Lock()
		s.changes.next = max(s.changes.next, next+1)
		lim := s.changes.lim
		start := false
		if next%lim.pruneEvery == 0 && next > lim.keep {
			s.changes.pruneBelow = max(s.changes.pruneBelow, next-lim.keep+1)
			start = !s.changes.pruning
			s.changes.pruning = true
		}
		s.changes.mu.Unlock()
		if start {
			s.bg.Go(s.pruneChanges)
		}
		return nil
	}
	return errors.New("the change log is contended: too many other parents appended at once")
}

// pruneChanges deletes the entries below the latest prune mark, until no
// newer mark is left; one runs at a time.
func (s *Service) pruneChanges() {
	ctx, cancel := context.WithTimeout(s.bgCtx, 10*s.timeout)
	defer cancel()
	for {
		s.changes.mu.Lock()
		below := s.changes.pruneBelow
		if below <= s.changes.pruned {
			s.changes.pruning = false
			s.changes.mu.Unlock()
			return
		}
		s.changes.mu.Unlock()
		err := s.deleteChangesBelow(ctx, below)
		s.changes.mu.Lock()
		if err != nil {
			s.changes.pruning = false
			s.changes.mu.Unlock()
			s.log.WarnContext(ctx, "pruning the key change log failed; the next prune retries", "err", err)
			return
		}
		s.changes.pruned = max(s.changes.pruned, below)
		s.changes.mu.Unlock()
	}
}

// deleteChangesBelow deletes the log's entries numbered below below. Names
// that are not entries are left alone.
func (s *Service) deleteChangesBelow(ctx context.Context, below uint64) error {
	return s.walkChanges(ctx, 0, func(name string, seq uint64, ok bool) (bool, error) {
		if !ok {
			return true, nil
		}
		if seq >= below {
			return false, nil
		}
		if err := s.store.Delete(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return true, nil
	})
}

// lastChange returns the number of the log's last entry, after (the number
// given) if none follows it.
func (s *Service) lastChange(ctx context.Context, after uint64) (uint64, error) {
	last := after
	err := s.walkChanges(ctx, after, func(_ string, seq uint64, ok bool) (bool, error) {
		if ok {
			last = max(last, seq)
		}
		return true, nil
	})
	return last, err
}

// walkChanges calls fn, in order, for every name in the log after entry
// number after, with its number if it is an entry (ok), until fn answers
// false or fails.
func (s *Service) walkChanges(ctx context.Context, after uint64, fn func(name string, seq uint64, ok bool) (bool, error)) error {
	const page = 1000
	from := changeFrom(after)
	for {
		names, err := s.listChanges(ctx, from, page)
		if err != nil {
			return err
		}
		for _, n := range names {
			seq, ok := parseChangeName(n)
			if more, err := fn(n, seq, ok); !more || err != nil {
				return err
			}
		}
		if len(names) < page {
			return nil
		}
		from = names[len(names)-1]
	}
}

// changeFrom is the List start for the names after entry number after.
func changeFrom(after uint64) string {
	if after == 0 {
		return ""
	}
	return changeName(after)
}

// listChanges lists up to limit names of the log after from.
func (s *Service) listChanges(ctx context.Context, from string, limit int) ([]string, error) {
	names, err := s.store.List(ctx, changesPrefix, from, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", changesPrefix, err)
	}
	return names, nil
}

// errChangesStore marks a sync that failed on the store (rather than on the
// enclave); only those make the log stale.
type errChangesStore struct{ error }

func (e errChangesStore) Unwrap() error { return e.error }

// SyncChanges hands the enclave the log entries it has not applied yet.
// The parent calls it every freeze poll. When the store could not be read
// for longer than FreezeMaxStale, signing is refused (Unavailable) until it
// can: a key disabled through another parent must not sign here unnoticed.
// An enclave that cannot be reached is told on a later sync.
func (s *Service) SyncChanges(ctx context.Context) error {
	s.changes.syncMu.Lock()
	defer s.changes.syncMu.Unlock()
	err := s.syncChangesLocked(ctx)
	var serr errChangesStore
	switch {
	case err == nil:
		if s.changes.read.succeeded() {
			s.log.WarnContext(ctx, "the key change log can be read from the key store again")
		}
	case errors.As(err, &serr):
		if s.changes.read.failed(s.freezeMaxStale) {
			s.log.ErrorContext(ctx, "the key change log could not be read from the key store for too long; signing is refused until it can",
				"last_read", s.changes.read.last, "err", err)
		}
	}
	return err
}

func (s *Service) syncChangesLocked(ctx context.Context) error {
	var pos enclavev1.ApplyKeyChangesResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_APPLY_KEY_CHANGES, &enclavev1.ApplyKeyChangesRequest{}, &pos); err != nil {
		return fmt.Errorf("asking the enclave for its change-log position: %w", err)
	}
	s.changes.mu.Lock()
	catchUp := s.changes.lim.catchUp
	s.changes.mu.Unlock()
	names, err := s.listChanges(ctx, changeFrom(pos.GetSeq()), int(catchUp)+1)
	if err != nil {
		return errChangesStore{err}
	}
	var seqs []uint64
	for _, n := range names {
		if seq, ok := parseChangeName(n); ok {
			seqs = append(seqs, seq)
		} else {
			s.log.WarnContext(ctx, "the key change log holds an entry not written by nitrosigner; ignored", "name", n)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	req := &enclavev1.ApplyKeyChangesRequest{Seq: seqs[len(seqs)-1]}
	gap := seqs[0] != pos.GetSeq()+1 || uint64(len(seqs)) > catchUp
	if !gap {
		fetched := s.fetchChanges(ctx, seqs)
		for i, f := range fetched {
			switch {
			case errors.Is(f.err, store.ErrNotFound):
				gap = true // pruned since the listing
			case f.err != nil && errors.As(f.err, new(errChangesStore)):
				return f.err
			case f.err != nil:
				s.log.ErrorContext(ctx, "the key change log holds an entry nitrosigner cannot read; ignored",
					"name", changeName(seqs[i]), "err", f.err)
			default:
				req.Changes = append(req.Changes, f.change)
			}
		}
	}
	if gap {
		last, err := s.lastChange(ctx, req.GetSeq())
		if err != nil {
			return errChangesStore{err}
		}
		req = &enclavev1.ApplyKeyChangesRequest{Seq: last, EvictAll: true}
		// Loads running now may have read a blob older than a change
		// the enclave is not told of one by one: they read again.
		s.changes.epoch.Add(1)
		lvl := slog.LevelWarn
		if pos.GetSeq() == 0 {
			lvl = slog.LevelInfo // a new enclave: nothing cached that could be stale
		}
		s.log.Log(ctx, lvl, "the enclave cannot be handed the key changes it missed one by one; it drops every cached key and loads them again on their next use",
			"enclave_position", pos.GetSeq(), "log_position", last)
	}
	if err := s.call(ctx, enclavev1.Method_METHOD_APPLY_KEY_CHANGES, req, &pos); err != nil {
		return fmt.Errorf("handing the enclave key changes: %w", err)
	}
	s.changes.seen(req.GetSeq())
	if n := len(req.GetChanges()); n > 0 {
		s.log.InfoContext(ctx, "key changes made through other parents applied", "entries", n, "position", req.GetSeq())
	}
	return nil
}

type fetchedChange struct {
	change *enclavev1.KeyChange
	err    error
}

// fetchChanges reads the entries numbered seqs, listReads at a time.
func (s *Service) fetchChanges(ctx context.Context, seqs []uint64) []fetchedChange {
	out := make([]fetchedChange, len(seqs))
	sem := make(chan struct{}, listReads)
	var wg sync.WaitGroup
	for i, seq := range seqs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, _, err := s.store.Get(ctx, changeName(seq))
			switch {
			case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTooLarge):
				out[i].err = err
			case err != nil:
				out[i].err = errChangesStore{fmt.Errorf("read %s: %w", changeName(seq), err)}
			default:
				out[i].change, out[i].err = decodeChange(b)
			}
		})
	}
	wg.Wait()
	return out
}
