//go:build !nosim

package kmssim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// contentType is the media type of every request and answer of the KMS JSON
// 1.1 protocol.
const contentType = "application/x-amz-json-1.1"

// apiError is an error answer of the KMS JSON protocol: an HTTP status and a
// body {"__type": code, "message": msg}. KMS puts client errors in 400 and
// server errors in 5xx (nitro-reference §3.6). Messages are what the client
// sees; they never carry secrets.
type apiError struct {
	status int
	code   string
	msg    string
	// capital spells the message field "Message", as KMS does for
	// AccessDeniedException (nitro-reference §3.5).
	capital bool
	// noMessage omits the message field: KMS answers
	// InvalidCiphertextException without one [I].
	noMessage bool
}

// body renders the JSON error document.
func (e *apiError) body() []byte {
	doc := map[string]string{"__type": e.code}
	switch {
	case e.noMessage:
	case e.capital:
		doc["Message"] = e.msg
	default:
		doc["message"] = e.msg
	}
	b, _ := json.Marshal(doc) // a map of strings always marshals
	return b
}

func newAPIError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// Error answers, named after their codes. Wording follows real KMS answers
// where known; guesses are marked.
func errValidation(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "ValidationException", format, args...)
}

// errNull is the answer for a missing required member, worded like the
// Coral validator behind AWS JSON services.
func errNull(member string) *apiError {
	return errValidation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", member)
}

// errLength is the answer for a member outside its length constraints.
func errLength(member string, minLen, maxLen int) *apiError {
	return errValidation("1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length between %d and %d, inclusive", member, minLen, maxLen)
}

// errRange is the answer for a number outside its range.
func errRange(member string, v int64, minV, maxV int) *apiError {
	return errValidation("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value between %d and %d, inclusive", v, member, minV, maxV)
}

// errEnum is the answer for a value outside an enumeration.
func errEnum(member, v string, allowed ...string) *apiError {
	return errValidation("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", v, member, strings.Join(allowed, ", "))
}

func errSerialization(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "SerializationException", format, args...)
}

func errUnknownOperation() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "UnknownOperationException", noMessage: true}
}

func errNotFound(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "NotFoundException", format, args...)
}

func errDisabled(arn string) *apiError {
	return newAPIError(http.StatusBadRequest, "DisabledException", "%s is disabled.", arn)
}

func errInvalidState(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "KMSInvalidStateException", format, args...)
}

func errPendingDeletion(arn string) *apiError {
	return errInvalidState("%s is pending deletion.", arn)
}

func errInvalidCiphertext() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "InvalidCiphertextException", noMessage: true}
}

func errIncorrectKey() *apiError {
	return newAPIError(http.StatusBadRequest, "IncorrectKeyException",
		"The key ID in the request does not identify a KMS key that can perform this operation.")
}

func errInvalidKeyUsage(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidKeyUsageException", format, args...)
}

func errUnsupported(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "UnsupportedOperationException", format, args...)
}

func errMalformedPolicy(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "MalformedPolicyDocumentException", format, args...)
}

func errAlreadyExists(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "AlreadyExistsException", format, args...)
}

func errInvalidMarker() *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidMarkerException", "The marker that specifies where pagination should next begin is not valid.")
}

func errDryRun() *apiError {
	return newAPIError(http.StatusPreconditionFailed, "DryRunOperationException",
		"The request would have succeeded, but the DryRun option is set.")
}

// errAccessDenied is KMS's authorization failure, with the capital
// "Message" real KMS sends (nitro-reference §3.5). AccessDeniedException is
// not modelled by the SDK, so clients see a smithy.GenericAPIError.
func errAccessDenied(principal, action, resource string, explicit bool, policyKind string) *apiError {
	var why string
	if explicit {
		why = "with an explicit deny in a " + policyKind + " policy"
	} else {
		why = "because no " + policyKind + " policy allows the " + action + " action"
	}
	return &apiError{
		status:  http.StatusBadRequest,
		code:    "AccessDeniedException",
		msg:     fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s %s", principal, action, resource, why),
		capital: true,
	}
}

func errInternal() *apiError {
	return newAPIError(http.StatusInternalServerError, "KMSInternalException", "An internal error occurred.")
}

// decode parses a JSON request body into v. Malformed JSON, wrong member
// types and trailing data are SerializationException, as in AWS JSON
// services; unknown members are ignored. An empty body counts as {}.
func decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return errSerialization("Unexpected value for member '%s'", typeErr.Field)
		}
		return errSerialization("Malformed request body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errSerialization("Unexpected data after the request body")
	}
	return nil
}

// writeJSON sends a 200 answer. body is cleared afterwards, since answers
// can carry plaintext.
func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	clear(body)
}

// writeError sends an error answer. The code also goes in X-Amzn-ErrorType,
// where the SDK looks first.
func writeError(w http.ResponseWriter, e *apiError) {
	b := e.body()
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-ErrorType", e.code)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	w.Write(b)
}
