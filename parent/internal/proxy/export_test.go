package proxy

import "context"

// CheckRequestSize and CheckDecodedSize expose the size checks to tests.
var (
	CheckRequestSize = checkRequestSize
	CheckDecodedSize = checkDecodedSize
	DecodeChange     = decodeChange
)

// SetChangeLimits shrinks the change log's limits for a test: entries kept,
// prune interval, and the most entries a sync reads one by one.
func SetChangeLimits(s *Service, keep, pruneEvery, catchUp uint64) {
	s.changes.mu.Lock()
	defer s.changes.mu.Unlock()
	s.changes.lim = changeLimits{keep: keep, pruneEvery: pruneEvery, catchUp: catchUp}
}

// Load runs the service's key load (store read, LoadKeys, retries).
func Load(s *Service, ctx context.Context, ids ...string) []error { return s.load(ctx, ids) }

// BumpChangeEpoch does what a sync that made the enclave drop every cached
// key does to loads running meanwhile.
func BumpChangeEpoch(s *Service) { s.changes.epoch.Add(1) }
