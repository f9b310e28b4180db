package server

import (
	"context"
	"fmt"
	"log/slog"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
)

// MaxChanges bounds the changes of one ApplyKeyChanges call.
const MaxChanges = 4096

// applyKeyChanges brings the cache up to changes made through other parents
// sharing the key store (see the parent's change log). The position only
// moves forward; a call with nothing in it reports it.
func (s *Server) applyKeyChanges(ctx context.Context, in *enclavev1.ApplyKeyChangesRequest) (*enclavev1.ApplyKeyChangesResponse, error) {
	if n := len(in.GetChanges()); n > MaxChanges {
		return nil, invalid("changes", "must hold at most %d items, got %d", MaxChanges, n)
	}
	for i, c := range in.GetChanges() {
		switch id := c.GetKeyId(); {
		case id == "" || len(id) > maxKeyIDLen:
			return nil, invalid(fmt.Sprintf("changes[%d].key_id", i), "must hold 1..%d bytes", maxKeyIDLen)
		case c.GetDeleted() && c.GetGeneration() != 0:
			return nil, invalid(fmt.Sprintf("changes[%d].generation", i), "must be 0 for a deletion")
		}
	}
	if in.GetSeq() == 0 && (len(in.GetChanges()) > 0 || in.GetEvictAll()) {
		return nil, invalid("seq", "required with changes or evict_all")
	}
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if in.GetEvictAll() {
		n := s.cfg.Keyring.EvictAll()
		lvl := slog.LevelWarn
		if n == 0 {
			lvl = slog.LevelInfo
		}
		s.log.Log(ctx, lvl, "every cached key dropped: the parent cannot tell which key changes this enclave missed",
			"dropped", n, "seq", in.GetSeq())
	}
	for _, c := range in.GetChanges() {
		switch {
		case c.GetDeleted():
			s.cfg.Keyring.Evict(c.GetKeyId(), true)
			s.log.InfoContext(ctx, "key deleted through another parent", "key_id", c.GetKeyId())
		case s.cfg.Keyring.Supersede(c.GetKeyId(), c.GetGeneration()):
			s.log.InfoContext(ctx, "cached key dropped: changed through another parent", "key_id", c.GetKeyId(),
				"generation", c.GetGeneration())
		}
	}
	s.changeSeq = max(s.changeSeq, in.GetSeq())
	return &enclavev1.ApplyKeyChangesResponse{Seq: s.changeSeq}, nil
}
