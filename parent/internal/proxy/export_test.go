package proxy

// SetBatchLimits changes the batcher's queue and byte limits, for tests.
func (s *Service) SetBatchLimits(maxQueue, maxBatchBytes int) {
	s.batch.maxQueue, s.batch.maxBatchBytes = maxQueue, maxBatchBytes
}
