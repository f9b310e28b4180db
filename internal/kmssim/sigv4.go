//go:build !nosim

package kmssim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SigV4 constants.
const (
	sigAlgorithm  = "AWS4-HMAC-SHA256"
	sigTimeFormat = "20060102T150405Z"
	sigDateFormat = "20060102"
	sigService    = "kms"
	// maxSkew is how far X-Amz-Date may be from the server clock.
	maxSkew = 15 * time.Minute
)

// signatureMismatch is the message AWS JSON services give for a wrong
// signature (for instance a wrong secret key).
const signatureMismatch = "The request signature we calculated does not match the signature you provided. " +
	"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."

func errInvalidSignature(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidSignatureException", format, args...)
}

func errIncompleteSignature(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "IncompleteSignatureException", format, args...)
}

func errUnrecognizedClient() *apiError {
	return newAPIError(http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
}

// errMissingAuth answers a request without an Authorization header. The
// code is the one AWS JSON services use; the 400 status is a guess [I].
func errMissingAuth() *apiError {
	return newAPIError(http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token")
}

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	accessKeyID   string
	date          string // YYYYMMDD from the credential scope
	region        string
	service       string
	signedHeaders []string
	signature     string
}

// parseAuthorization parses
//
//	AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/kms/aws4_request, SignedHeaders=a;b, Signature=hex
func parseAuthorization(h string) (*authorization, *apiError) {
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != sigAlgorithm {
		return nil, errIncompleteSignature("Authorization header requires the %s algorithm.", sigAlgorithm)
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, errIncompleteSignature("Authorization header has a malformed element.")
		}
		fields[k] = v
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			return nil, errIncompleteSignature("Authorization header requires '%s' parameter.", k)
		}
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || scope[0] == "" {
		return nil, errIncompleteSignature("Credential must have the form <key>/<date>/<region>/<service>/aws4_request.")
	}
	a := &authorization{
		accessKeyID:   scope[0],
		date:          scope[1],
		region:        scope[2],
		service:       scope[3],
		signedHeaders: strings.Split(fields["SignedHeaders"], ";"),
		signature:     fields["Signature"],
	}
	if !sort.StringsAreSorted(a.signedHeaders) {
		return nil, errIncompleteSignature("SignedHeaders must be sorted.")
	}
	return a, nil
}

// authenticate checks the request's SigV4 signature against the configured
// credentials and returns the caller's credential. body is the complete
// request body.
//
// The checks and their errors follow AWS: no Authorization header →
// MissingAuthenticationTokenException; a malformed header →
// IncompleteSignatureException; an unknown access key id or a wrong session
// token → UnrecognizedClientException; a wrong scope, an X-Amz-Date more
// than 15 minutes from the server clock or a wrong signature →
// InvalidSignatureException.
func (s *Server) authenticate(r *http.Request, body []byte) (*Credential, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errMissingAuth()
	}
	a, aerr := parseAuthorization(h)
	if aerr != nil {
		return nil, aerr
	}
	cred, ok := s.cfg.Credentials[a.accessKeyID]
	if !ok {
		return nil, errUnrecognizedClient()
	}
	if token := r.Header.Get("X-Amz-Security-Token"); subtle.ConstantTimeCompare([]byte(token), []byte(cred.SessionToken)) != 1 {
		return nil, errUnrecognizedClient()
	}

	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return nil, errIncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	t, err := time.Parse(sigTimeFormat, amzDate)
	if err != nil {
		return nil, errIncompleteSignature("X-Amz-Date '%s' is not in the ISO 8601 basic format.", amzDate)
	}
	now := s.cfg.Now().UTC()
	switch {
	case t.Before(now.Add(-maxSkew)):
		return nil, errInvalidSignature("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			amzDate, now.Add(-maxSkew).Format(sigTimeFormat), now.Format(sigTimeFormat))
	case t.After(now.Add(maxSkew)):
		return nil, errInvalidSignature("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			amzDate, now.Add(maxSkew).Format(sigTimeFormat), now.Format(sigTimeFormat))
	}
	if a.date != t.Format(sigDateFormat) {
		return nil, errInvalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			a.date, t.Format(sigDateFormat), amzDate)
	}
	if a.region != s.cfg.Region {
		return nil, errInvalidSignature("Credential should be scoped to a valid region.")
	}
	if a.service != sigService {
		return nil, errInvalidSignature("Credential should be scoped to correct service: '%s'.", sigService)
	}
	if !contains(a.signedHeaders, "host") {
		return nil, errInvalidSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
	}

	canonical := canonicalRequest(r, a.signedHeaders, body)
	scope := strings.Join([]string{a.date, a.region, a.service, "aws4_request"}, "/")
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{sigAlgorithm, amzDate, scope, hex.EncodeToString(sum[:])}, "\n")
	key := signingKey(cred.Secret, a.date, a.region, a.service)
	want := hex.EncodeToString(hmacSHA256(key, []byte(toSign)))
	clear(key)
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return nil, errInvalidSignature(signatureMismatch)
	}
	return &cred, nil
}

// canonicalRequest builds the SigV4 canonical request from what the server
// received. Host and Content-Length are not in r.Header on the server side,
// so they come from r.Host and r.ContentLength.
func canonicalRequest(r *http.Request, signed []string, body []byte) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL.EscapedPath()))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.Query()))
	b.WriteByte('\n')
	for _, name := range signed {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = r.Header.Values(name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range values {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Join(strings.Fields(v), " "))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	sum := sha256.Sum256(body)
	b.WriteString(hex.EncodeToString(sum[:]))
	return b.String()
}

// canonicalURI is the SigV4 canonical path of a non-S3 service: the path as
// sent on the wire (already percent-encoded), escaped once more.
func canonicalURI(escapedPath string) string {
	if escapedPath == "" {
		return "/"
	}
	return sigEscape(escapedPath, false)
}

// canonicalQuery sorts and escapes query parameters.
func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, sigEscape(k, true)+"="+sigEscape(v, true))
		}
	}
	return strings.Join(parts, "&")
}

// sigEscape percent-encodes every byte except the RFC 3986 unreserved
// characters (and '/' unless encodeSlash).
func sigEscape(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// signingKey derives the SigV4 signing key.
func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
