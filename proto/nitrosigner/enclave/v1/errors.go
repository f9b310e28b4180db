package enclavev1

// KeyNotLoaded is the status message, with code FailedPrecondition, of an
// enclave call that needs a key the enclave has not loaded (ErrorMessage
// ERROR_MESSAGE_KEY_NOT_LOADED). The parent answers it by fetching the
// key's sealed blobs, calling LoadKeys and retrying.
const KeyNotLoaded = "key not loaded"
