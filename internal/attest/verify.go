package attest

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hf/nitrite"
)

// Sentinel errors returned (wrapped) by [Verify]. Branch on them with
// [errors.Is]; the wrapping message says what exactly failed.
var (
	// ErrMalformed means the document is not a well-formed Nitro attestation
	// document: bad CBOR or COSE_Sign1 structure, a protected header other
	// than ES384, a missing or mistyped field, a size limit exceeded, or a
	// signing certificate that is not ECDSA P-384.
	ErrMalformed = errors.New("attest: malformed attestation document")

	// ErrUntrusted means the certificate chain does not lead to one of the
	// trusted roots, or a certificate in it is not valid at the verification
	// time (expired or not yet valid). The chain error from crypto/x509, when
	// there is one, is wrapped too, so [errors.As] finds
	// [x509.CertificateInvalidError] or [x509.UnknownAuthorityError].
	ErrUntrusted = errors.New("attest: untrusted attestation document")

	// ErrUnknownRoot is the [ErrUntrusted] of a document whose chain
	// starts at a root that is not trusted at all (not the AWS root, or not
	// one of Options.Roots), as opposed to a chain that does not verify.
	ErrUnknownRoot = fmt.Errorf("%w: cabundle[0] is not a trusted root", ErrUntrusted)

	// ErrBadSignature means the COSE_Sign1 signature does not verify with the
	// signing certificate's key. It can be wrapped together with ErrUntrusted.
	ErrBadSignature = errors.New("attest: bad attestation signature")

	// ErrStale means the document's timestamp is older than [Options.MaxAge]
	// or too far in the future.
	ErrStale = errors.New("attest: stale attestation document")

	// ErrDebugMode means the document comes from an enclave running in debug
	// mode (see [Document.Debug]) and [Options.AllowDebug] is false.
	ErrDebugMode = errors.New("attest: debug-mode attestation document")

	// ErrPCRMismatch means a PCR listed in [Options.PCRs] is absent from the
	// document or has a different value.
	ErrPCRMismatch = errors.New("attest: pcr mismatch")

	// ErrNonceMismatch means the document's nonce is absent or differs from
	// [Options.Nonce].
	ErrNonceMismatch = errors.New("attest: nonce mismatch")
)

// errPanic marks an error made from a recovered panic. Pre-checks are meant
// to make it unreachable; tests and the fuzz target assert it never occurs.
var errPanic = errors.New("internal panic")

// MaxFutureSkew is how far a document's timestamp may lie after
// [Options.Now] when [Options.MaxAge] is set. It absorbs clock drift between
// the enclave and the verifier (seconds in practice, see nitro-reference §7).
const MaxFutureSkew = time.Minute

// nitriteVerify is the call into hf/nitrite; tests replace it to exercise the
// panic recovery.
var nitriteVerify = nitrite.Verify

// awsRoot is the default trust anchor, never handed out to callers.
var awsRoot = AWSRoot()

// Options controls [Verify]. The zero value verifies against the AWS Nitro
// root at the current time, with no PCR, nonce or freshness requirement, and
// refuses debug-mode documents.
type Options struct {
	// Roots are the trusted root certificates. Nil means the embedded AWS
	// Nitro Enclaves Root G1 ([AWSRoot]); a non-nil empty slice trusts
	// nothing. The document's cabundle[0] must be byte-identical to one of
	// them, and the chain is anchored on that root alone. Pass the simulator
	// root only in tests and simulated deployments: any holder of its key can
	// mint documents with arbitrary PCRs.
	Roots []*x509.Certificate

	// Now is the verification time used for certificate validity and
	// [Options.MaxAge]. Zero means time.Now(). Real leaf certificates live
	// three hours, so archived documents verify only with Now inside their
	// window.
	Now time.Time

	// PCRs are the expected PCR values, by index. Each listed PCR must be
	// present in the document and equal byte for byte; PCRs not listed are
	// not checked. Nil or empty checks none, which accepts any enclave image
	// signed by a trusted root: production callers should pin at least PCR0.
	// [ParsePCRs] builds this map from hex.
	PCRs map[int][]byte

	// Nonce, if non-nil, must equal the document's nonce (compared in
	// constant time). A document without a nonce never matches; an empty
	// non-nil Nonce matches only a present, empty nonce. Nil skips the check,
	// which allows replay of old documents within the certificate lifetime.
	Nonce []byte

	// AllowDebug accepts documents from debug-mode enclaves (PCR0, PCR1 and
	// PCR2 all zero). Their memory can be read through the console by the
	// parent instance, so never set it where real keys are at stake.
	AllowDebug bool

	// MaxAge, if positive, requires the document timestamp to be at most
	// MaxAge before Now and at most [MaxFutureSkew] after it. Zero or negative
	// disables the check; freshness is then bounded only by the leaf
	// certificate's three-hour lifetime.
	MaxAge time.Duration
}

// Verify checks the attestation document doc, a COSE_Sign1 structure as
// produced by the Nitro Secure Module (untagged, or wrapped in CBOR tag 18),
// and returns its parsed contents.
//
// In order, Verify:
//  1. checks the structure without trusting anything: size limits, a
//     4-element COSE_Sign1 with protected header exactly {1: -35} (ES384) and
//     an empty unprotected header, a 96-byte signature, the payload fields,
//     types and sizes of the AWS specification, no duplicate map keys, and a
//     signing certificate with an ECDSA P-384 key signed with
//     ecdsa-with-SHA384;
//  2. requires cabundle[0] to be byte-identical to one of [Options.Roots] and
//     has hf/nitrite verify the chain leaf → cabundle → that root at
//     [Options.Now], and the COSE signature with the leaf key;
//  3. requires the leaf to be an end-entity certificate allowed to sign and
//     every cabundle entry to be a CA allowed to sign certificates;
//  4. applies the caller's policy: [Options.MaxAge], debug mode,
//     [Options.PCRs] and [Options.Nonce].
//
// On success the error is nil and the Document is non-nil. Any failure
// returns a nil Document and an error wrapping one of [ErrMalformed],
// [ErrUntrusted], [ErrBadSignature], [ErrStale], [ErrDebugMode],
// [ErrPCRMismatch] or [ErrNonceMismatch]. Verify does not panic on hostile
// input: a panic inside the verifier is recovered and reported as
// ErrMalformed. No revocation check is made; AWS advises against CRL checks
// for this chain.
//
// Verify is safe for concurrent use.
func Verify(doc []byte, opts Options) (d *Document, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %w: %v", ErrMalformed, errPanic, r)
		}
		if err != nil {
			d = nil
		}
	}()

	p, err := parse(doc)
	if err != nil {
		return nil, err
	}
	d = &p.doc

	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	roots := opts.Roots
	if roots == nil {
		roots = []*x509.Certificate{awsRoot}
	}
	root := anchor(d.CABundle[0], roots)
	if root == nil {
		return nil, ErrUnknownRoot
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)

	res, err := nitriteVerify(p.cose, nitrite.VerifyOptions{Roots: pool, CurrentTime: now})
	if err != nil {
		return nil, classify(res, err)
	}
	if res == nil || res.Document == nil || !res.SignatureOK {
		return nil, fmt.Errorf("%w: verifier returned no signed result", ErrBadSignature)
	}
	if err := sameDocument(d, res.Document); err != nil {
		return nil, err
	}
	if err := checkRoles(d); err != nil {
		return nil, err
	}
	if err := checkChainOrder(d, now); err != nil {
		return nil, err
	}

	if err := checkPolicy(d, opts, now); err != nil {
		return nil, err
	}
	return d, nil
}

// anchor returns the root among roots whose DER equals cabundle[0], or nil.
func anchor(first *x509.Certificate, roots []*x509.Certificate) *x509.Certificate {
	for _, r := range roots {
		if r != nil && bytes.Equal(r.Raw, first.Raw) {
			return r
		}
	}
	return nil
}

// classify maps an error from nitrite to the package's sentinels. nitrite
// returns a Result alongside chain and signature errors; it is only used to
// tell whether the signature also failed.
func classify(res *nitrite.Result, err error) error {
	sigBad := res != nil && !res.SignatureOK
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var constraint x509.ConstraintViolationError
	switch {
	case errors.Is(err, nitrite.ErrBadSignature):
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	case errors.As(err, &invalid), errors.As(err, &unknown), errors.As(err, &constraint):
		if sigBad {
			return fmt.Errorf("%w: %w: certificate chain: %w", ErrUntrusted, ErrBadSignature, err)
		}
		return fmt.Errorf("%w: certificate chain: %w", ErrUntrusted, err)
	case res == nil:
		// Structural rejections the pre-checks should already have made.
		return fmt.Errorf("%w: nitrite: %w", ErrMalformed, err)
	default:
		if sigBad {
			return fmt.Errorf("%w: %w: %w", ErrUntrusted, ErrBadSignature, err)
		}
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
}

// sameDocument checks that nitrite decoded the payload to the same values as
// the strict pre-parser, so the fields returned are the ones that were
// signed and checked.
func sameDocument(d *Document, n *nitrite.Document) error {
	same := n.ModuleID == d.ModuleID &&
		n.Digest == d.Digest &&
		n.Timestamp == uint64(d.Timestamp.UnixMilli()) &&
		bytes.Equal(n.Certificate, d.Certificate.Raw) &&
		len(n.CABundle) == len(d.CABundle) &&
		len(n.PCRs) == len(d.PCRs) &&
		sameOptional(n.PublicKey, d.PublicKey) &&
		sameOptional(n.UserData, d.UserData) &&
		sameOptional(n.Nonce, d.Nonce)
	for i := 0; same && i < len(d.CABundle); i++ {
		same = bytes.Equal(n.CABundle[i], d.CABundle[i].Raw)
	}
	for i, v := range d.PCRs {
		if !same {
			break
		}
		nv, ok := n.PCRs[uint(i)]
		same = ok && bytes.Equal(nv, v)
	}
	if !same {
		return malformed("payload decodes ambiguously")
	}
	return nil
}

// sameOptional reports whether two optional fields are equal, with absent
// (nil) distinct from empty.
func sameOptional(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// checkRoles applies the key-usage rules of the AWS verification procedure
// that crypto/x509 does not enforce: the leaf is an end-entity certificate
// with digitalSignature, and every cabundle entry is a CA with keyCertSign.
func checkRoles(d *Document) error {
	leaf := d.Certificate
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: signing certificate is a ca or lacks digitalSignature", ErrUntrusted)
	}
	for i, c := range d.CABundle {
		if !c.BasicConstraintsValid || !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Errorf("%w: cabundle[%d] is not a ca with keyCertSign", ErrUntrusted, i)
		}
	}
	return nil
}

// checkChainOrder checks the cabundle as the ordered chain the AWS
// procedure defines (reference §1.4): each entry issued and signed by the
// one before it, the leaf by the last, and every certificate valid at now.
// nitrite hands the whole cabundle to crypto/x509 as an unordered pool, in
// which extra, expired or reordered entries pass unchecked as long as some
// path from the leaf to the root exists.
func checkChainOrder(d *Document, now time.Time) error {
	chain := append(slices.Clone(d.CABundle), d.Certificate)
	seen := make(map[string]bool, len(chain))
	for i, c := range chain {
		// A self-signed root repeated would chain to itself.
		if seen[string(c.Raw)] {
			return fmt.Errorf("%w: %s repeats an earlier certificate", ErrUntrusted, chainName(i, len(chain)))
		}
		seen[string(c.Raw)] = true
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("%w: %s is not valid at %s (valid %s to %s)", ErrUntrusted,
				chainName(i, len(chain)), now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
		if i == 0 {
			continue
		}
		parent := chain[i-1]
		if !bytes.Equal(c.RawIssuer, parent.RawSubject) {
			return fmt.Errorf("%w: %s is not issued by %s", ErrUntrusted, chainName(i, len(chain)), chainName(i-1, len(chain)))
		}
		if err := c.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("%w: %s is not signed by %s: %w", ErrUntrusted, chainName(i, len(chain)), chainName(i-1, len(chain)), err)
		}
	}
	return nil
}

// chainName names position i of a chain of n certificates: the cabundle's
// entries, then the leaf.
func chainName(i, n int) string {
	if i == n-1 {
		return "the signing certificate"
	}
	return fmt.Sprintf("cabundle[%d]", i)
}

// checkPolicy applies the caller's requirements to a verified document.
func checkPolicy(d *Document, opts Options, now time.Time) error {
	if opts.MaxAge > 0 {
		if age := now.Sub(d.Timestamp); age > opts.MaxAge {
			return fmt.Errorf("%w: issued %v before verification time, limit %v", ErrStale, age, opts.MaxAge)
		}
		if ahead := d.Timestamp.Sub(now); ahead > MaxFutureSkew {
			return fmt.Errorf("%w: issued %v after verification time, limit %v", ErrStale, ahead, MaxFutureSkew)
		}
	}
	if d.Debug() && !opts.AllowDebug {
		return fmt.Errorf("%w: pcr0, pcr1 and pcr2 are zero", ErrDebugMode)
	}
	for _, i := range slices.Sorted(maps.Keys(opts.PCRs)) {
		got, ok := d.PCRs[i]
		if !ok {
			return fmt.Errorf("%w: pcr%d is absent", ErrPCRMismatch, i)
		}
		if !bytes.Equal(got, opts.PCRs[i]) {
			return fmt.Errorf("%w: pcr%d differs", ErrPCRMismatch, i)
		}
	}
	if opts.Nonce != nil {
		if d.Nonce == nil {
			return fmt.Errorf("%w: document has no nonce", ErrNonceMismatch)
		}
		if subtle.ConstantTimeCompare(d.Nonce, opts.Nonce) != 1 {
			return fmt.Errorf("%w: the document's nonce is not the one asked for", ErrNonceMismatch)
		}
	}
	return nil
}
