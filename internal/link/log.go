package link

import (
	"context"
	"log/slog"
)

// LogRequestIDs wraps h so that every record logged with a context that
// carries a request id (see [WithRequestID]; a server's handlers get the
// id their request carried) gets a "request_id" attribute. The enclave
// logs through it, so that its lines about a call carry the id the parent
// logged for it. A handler it already wraps is returned as it is. Like
// any attribute added when a record is handled, the id goes inside the
// groups opened with WithGroup.
func LogRequestIDs(h slog.Handler) slog.Handler {
	if _, ok := h.(requestIDHandler); ok {
		return h
	}
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			r = r.Clone()
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
