// Package kms is the enclave's AWS KMS client.
//
// It is the unmodified aws-sdk-go-v2 KMS client with three changes to its
// HTTP transport: every connection goes through one fixed transport address
// (production vsock://3:8000, the parent's forwarder, which moves bytes and
// nothing else), DNS is never used, and TLS is verified inside the enclave
// against roots compiled into the image. The parent therefore sees only TLS
// ciphertext and cannot answer in KMS's name.
//
// Every call that returns key material carries Recipient: the enclave's
// attestation document with its RSA-2048 public key. KMS then encrypts the
// plaintext to that key (CMS, package internal/cms) and only this process
// can open it. KMS evaluates the key policy's kms:RecipientAttestation
// conditions on the document, so a changed image is refused by KMS itself.
//
// The enclave has no credentials of its own: the parent pushes its role's
// credentials ([Client.SetCredentials]) and refreshes them before expiry.
package kms

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// Errors callers branch on. Their messages say what KMS refused; they never
// carry key material or credentials.
var (
	// ErrNoCredentials means the parent has not pushed AWS credentials yet,
	// or they expired.
	ErrNoCredentials = errors.New("no valid AWS credentials in the enclave (the parent pushes them)")
	// ErrAttestationRefused means KMS denied a request that carried the
	// enclave's attestation: the key policy does not admit this enclave
	// image (PCRs), or its role.
	ErrAttestationRefused = errors.New("KMS refused the enclave's attestation")
	// ErrKeyUnusable means the KMS key is disabled, pending deletion or
	// otherwise in a state that cannot serve the request.
	ErrKeyUnusable = errors.New("KMS key cannot be used")
	// ErrInvalidCiphertext means KMS did not accept a ciphertext with its
	// encryption context: altered, or bound to another identity.
	ErrInvalidCiphertext = errors.New("KMS rejected the ciphertext or its encryption context")
	// ErrUnavailable means KMS could not be reached or failed; retry later.
	ErrUnavailable = errors.New("KMS unavailable")
	// ErrBadAnswer means KMS's answer did not have the expected shape.
	ErrBadAnswer = errors.New("unexpected KMS answer")
)

// Attester makes attestation documents; public key = the RSA key's SPKI.
type Attester interface {
	Attest(ctx context.Context, nonce, userData, publicKey []byte) ([]byte, error)
}

// Config configures a [Client].
type Config struct {
	// Region is the AWS region of the KMS endpoint. Required.
	Region string
	// Endpoint is the KMS URL, e.g. https://kms.us-east-1.amazonaws.com.
	// Its host is the TLS server name and the SigV4 host; it is never
	// resolved. Default: https://kms.REGION.amazonaws.com.
	Endpoint string
	// Dial opens a byte stream to KMS (production: vsock 3:8000 through the
	// parent). Required.
	Dial func(ctx context.Context) (net.Conn, error)
	// RootCAs verifies KMS's TLS certificate. Required.
	RootCAs *x509.CertPool
	// Attester makes the Recipient attestation documents. Required.
	Attester Attester
	// RSAKey is the enclave's KMS key; its public half goes into every
	// document. Required.
	RSAKey *rsa.PrivateKey
	// UserData is put into every document (the enclave identity).
	UserData []byte
	// DocumentTTL reuses an attestation document for this long (default
	// one minute; documents are valid for hours, this bounds NSM calls
	// during a cold start that unwraps many KEKs).
	DocumentTTL time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// MaxAttempts bounds the SDK's retries (default 3).
	MaxAttempts int
}

// Client calls KMS from inside the enclave. It is safe for concurrent use.
type Client struct {
	cfg    Config
	api    *awskms.Client
	spki   []byte
	creds  atomic.Pointer[aws.Credentials]
	docMu  sync.Mutex
	doc    []byte
	docAt  time.Time
	closer func()
}

// New checks cfg and returns a client. It makes no network call.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Region == "":
		return nil, errors.New("kms: Region is required")
	case cfg.Dial == nil:
		return nil, errors.New("kms: Dial is required")
	case cfg.RootCAs == nil:
		return nil, errors.New("kms: RootCAs is required")
	case cfg.Attester == nil:
		return nil, errors.New("kms: Attester is required")
	case cfg.RSAKey == nil:
		return nil, errors.New("kms: RSAKey is required")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "https://kms." + cfg.Region + ".amazonaws.com"
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("kms: Endpoint %q must be an https URL", cfg.Endpoint)
	}
	if cfg.DocumentTTL <= 0 {
		cfg.DocumentTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	spki, err := x509.MarshalPKIXPublicKey(&cfg.RSAKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms: encode RSA public key: %w", err)
	}
	tr := &http.Transport{
		Proxy: nil,
		// The address is ignored: every connection goes through Dial, so
		// the KMS host name is never resolved.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return cfg.Dial(ctx) },
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    cfg.RootCAs,
		},
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// A stalled pipe must not hold a KEK unwrap (and everyone waiting
		// on it) forever.
		ResponseHeaderTimeout: 20 * time.Second,
	}
	c := &Client{cfg: cfg, spki: spki, closer: tr.CloseIdleConnections}
	c.api = awskms.New(awskms.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(cfg.Endpoint),
		HTTPClient:   &http.Client{Transport: tr},
		Credentials:  aws.CredentialsProviderFunc(c.retrieve),
		// Retries stay well inside a client's call deadline: at most
		// MaxAttempts tries, at most a second apart.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = cfg.MaxAttempts
			o.MaxBackoff = time.Second
		}),
	})
	return c, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.closer() }

// SetCredentials replaces the AWS credentials the client signs with.
func (c *Client) SetCredentials(accessKeyID, secretAccessKey, sessionToken string, expires time.Time) error {
	if accessKeyID == "" || secretAccessKey == "" {
		return errors.New("kms: access key id and secret are required")
	}
	cr := aws.Credentials{
		AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, SessionToken: sessionToken,
		Source: "parent", CanExpire: !expires.IsZero(), Expires: expires,
	}
	c.creds.Store(&cr)
	return nil
}

// CredentialsExpire reports when the current credentials expire (zero: none
// set, or they do not expire).
func (c *Client) CredentialsExpire() time.Time {
	if cr := c.creds.Load(); cr != nil {
		return cr.Expires
	}
	return time.Time{}
}

func (c *Client) retrieve(context.Context) (aws.Credentials, error) {
	cr := c.creds.Load()
	if cr == nil || (cr.CanExpire && !c.cfg.Now().Before(cr.Expires)) {
		return aws.Credentials{}, ErrNoCredentials
	}
	return *cr, nil
}

// recipient returns the Recipient for a call, reusing a recent document.
func (c *Client) recipient(ctx context.Context) (*types.RecipientInfo, error) {
	c.docMu.Lock()
	defer c.docMu.Unlock()
	now := c.cfg.Now()
	if c.doc == nil || now.Sub(c.docAt) >= c.cfg.DocumentTTL {
		doc, err := c.cfg.Attester.Attest(ctx, nil, c.cfg.UserData, c.spki)
		if err != nil {
			return nil, fmt.Errorf("kms: attestation for Recipient: %w", err)
		}
		c.doc, c.docAt = doc, now
	}
	return &types.RecipientInfo{
		AttestationDocument:    c.doc,
		KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256,
	}, nil
}

// GenerateDataKey asks KMS for a new AES-256 data key under kmsKeyARN,
// bound to encCtx, and opens the answer inside the enclave. It returns the
// 32-byte data key (the caller zeroizes it), the KMS ciphertext and the ARN
// of the key KMS used.
func (c *Client) GenerateDataKey(ctx context.Context, kmsKeyARN string, encCtx map[string]string) ([]byte, []byte, string, error) {
	rcp, err := c.recipient(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	out, err := c.api.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
		KeyId: aws.String(kmsKeyARN), KeySpec: types.DataKeySpecAes256,
		EncryptionContext: encCtx, Recipient: rcp,
	})
	if err != nil {
		return nil, nil, "", classify("GenerateDataKey", err)
	}
	clear(out.Plaintext) // KMS leaves it empty with Recipient; never used
	if len(out.CiphertextBlob) == 0 || out.KeyId == nil {
		return nil, nil, "", fmt.Errorf("%w: GenerateDataKey without ciphertext or key id", ErrBadAnswer)
	}
	pt, err := c.open(out.CiphertextForRecipient)
	if err != nil {
		return nil, nil, "", err
	}
	return pt, out.CiphertextBlob, *out.KeyId, nil
}

// Decrypt unwraps a data key made by [Client.GenerateDataKey]. encCtx must
// be the context it was made with; KMS refuses any other.
func (c *Client) Decrypt(ctx context.Context, kmsKeyARN string, ciphertext []byte, encCtx map[string]string) ([]byte, string, error) {
	rcp, err := c.recipient(ctx)
	if err != nil {
		return nil, "", err
	}
	out, err := c.api.Decrypt(ctx, &awskms.DecryptInput{
		KeyId: aws.String(kmsKeyARN), CiphertextBlob: ciphertext,
		EncryptionContext: encCtx, Recipient: rcp,
	})
	if err != nil {
		return nil, "", classify("Decrypt", err)
	}
	clear(out.Plaintext)
	if out.KeyId == nil {
		return nil, "", fmt.Errorf("%w: Decrypt without key id", ErrBadAnswer)
	}
	pt, err := c.open(out.CiphertextForRecipient)
	if err != nil {
		return nil, "", err
	}
	return pt, *out.KeyId, nil
}

func (c *Client) open(cfr []byte) ([]byte, error) {
	if len(cfr) == 0 {
		return nil, fmt.Errorf("%w: no CiphertextForRecipient", ErrBadAnswer)
	}
	pt, err := cms.Decrypt(c.cfg.RSAKey, cfr)
	if err != nil {
		return nil, fmt.Errorf("%w: CiphertextForRecipient: %v", ErrBadAnswer, err)
	}
	if len(pt) != 32 {
		clear(pt)
		return nil, fmt.Errorf("%w: data key is %d bytes, want 32", ErrBadAnswer, len(pt))
	}
	return pt, nil
}

// classify maps an SDK error to one of the package's sentinels, keeping
// KMS's code and message (which name no secret) for the operator.
func classify(op string, err error) error {
	if errors.Is(err, ErrNoCredentials) {
		return ErrNoCredentials
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("kms %s: %w", op, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		detail := fmt.Sprintf("kms %s: %s: %s", op, code, apiErr.ErrorMessage())
		switch code {
		case "AccessDeniedException":
			return fmt.Errorf("%w (%s)", ErrAttestationRefused, detail)
		case "DisabledException", "KMSInvalidStateException", "KeyUnavailableException", "NotFoundException":
			return fmt.Errorf("%w (%s)", ErrKeyUnusable, detail)
		case "InvalidCiphertextException", "IncorrectKeyException":
			return fmt.Errorf("%w (%s)", ErrInvalidCiphertext, detail)
		case "ValidationException":
			// What KMS answers for an attestation document it does not
			// accept is undocumented; the simulator uses this code.
			if strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "attestation") {
				return fmt.Errorf("%w (%s)", ErrAttestationRefused, detail)
			}
		case "ThrottlingException", "DependencyTimeoutException", "KMSInternalException", "LimitExceededException":
			return fmt.Errorf("%w (%s)", ErrUnavailable, detail)
		case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException":
			return fmt.Errorf("%w (%s)", ErrNoCredentials, detail)
		}
		return fmt.Errorf("%w (%s)", ErrBadAnswer, detail)
	}
	return fmt.Errorf("%w: kms %s: %v", ErrUnavailable, op, err)
}
