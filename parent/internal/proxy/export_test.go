package proxy

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
