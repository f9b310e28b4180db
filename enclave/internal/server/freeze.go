package server

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// setFreeze turns the signing switch. A call already signing when it
// arrives finishes; every signature that starts later is refused.
func (s *Server) setFreeze(ctx context.Context, st *signerv1.FreezeState) (*enclavev1.SetFreezeResponse, error) {
	switch {
	case st == nil:
		return nil, invalid("state", "required")
	case st.GetChangedAtUnixMs() < 0:
		return nil, invalid("state.changed_at_unix_ms", "must not be negative")
	case !st.GetFrozen() && st.GetReason() != "":
		return nil, invalid("state.reason", "must be empty when not frozen")
	case st.GetFrozen():
		if err := limits.CheckFreezeReason(st.GetReason()); err != nil {
			return nil, invalid("state.reason", "%v", err)
		}
		was := s.frozen.Swap(proto.CloneOf(st))
		if was == nil || was.GetReason() != st.GetReason() {
			s.log.WarnContext(ctx, "signing frozen", "reason", st.GetReason(), "changed_at_unix_ms", st.GetChangedAtUnixMs())
		}
	default:
		if s.frozen.Swap(nil) != nil {
			s.log.WarnContext(ctx, "signing unfrozen", "changed_at_unix_ms", st.GetChangedAtUnixMs())
		}
	}
	return &enclavev1.SetFreezeResponse{}, nil
}
