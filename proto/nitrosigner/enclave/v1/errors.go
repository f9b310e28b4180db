package enclavev1

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// KeyNotLoaded is the status message, with code FailedPrecondition, of an
// enclave call that needs a key the enclave has not loaded (ErrorMessage
// ERROR_MESSAGE_KEY_NOT_LOADED). The parent answers it by fetching the
// key's sealed blobs, calling LoadKeys and retrying.
const KeyNotLoaded = "key not loaded"

// Frozen starts the status message, with code FailedPrecondition, of every
// signing call refused because signing is frozen (see [FrozenError]).
const Frozen = "signing is frozen"

// FrozenError is the status of a signing call refused while f is in force:
// FailedPrecondition, "signing is frozen since TIME: REASON". The enclave
// and the parent answer with the same text.
func FrozenError(f *signerv1.FreezeState) error {
	msg := Frozen
	if ms := f.GetChangedAtUnixMs(); ms > 0 {
		msg += " since " + time.UnixMilli(ms).UTC().Format(time.RFC3339)
	}
	return status.Error(codes.FailedPrecondition, msg+": "+f.GetReason())
}
