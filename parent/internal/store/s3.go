package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// listPage is the most keys S3 returns per list request.
const listPage = 1000

// S3Config configures [NewS3]. The query parameters of an s3:// URL given to
// [Open] map onto the fields named in brackets.
type S3Config struct {
	// Bucket is the bucket name. Required.
	Bucket string
	// Prefix is prepended to every blob name to form the object key ("/" is
	// added if missing), so one bucket can hold several stores. It follows
	// the rules for blob names, except that it may end in "/".
	Prefix string
	// Region is the bucket's region [region]. Default: the AWS
	// configuration's (AWS_REGION, shared config); one of them must be set.
	Region string
	// SSE selects server-side encryption [sse]: "" (the bucket default),
	// "AES256" (SSE-S3) or "aws:kms" (SSE-KMS). Blobs are sealed by the
	// enclave regardless; SSE adds an access-controlled layer at rest.
	SSE string
	// SSEKMSKeyID is the KMS key for SSE "aws:kms" [sse-kms-key-id]. Empty
	// means the account's aws/s3 key. Only valid with SSE "aws:kms".
	SSEKMSKeyID string
	// Endpoint overrides the S3 endpoint URL [endpoint], for S3-compatible
	// servers and tests.
	Endpoint string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET instead of
	// BUCKET.ENDPOINT [path-style].
	PathStyle bool
	// Credentials, if set, replaces the default AWS credential chain. [Open]
	// always uses the default chain.
	Credentials aws.CredentialsProvider
	// HTTPClient, if set, replaces the SDK's default HTTP client (and with
	// it any AWS_CA_BUNDLE setting).
	HTTPClient *http.Client
}

// S3 is a [Store] in an S3 bucket. Object keys are the configured prefix
// followed by the blob name. Put-if-absent sends If-None-Match: *, and
// compare-and-swap If-Match: ETAG, so both are atomic against every client
// of the bucket; ETags are S3's own. Delete removes every version of the
// object if the bucket is (or was) versioned, so that a deleted sealed key
// cannot be restored.
//
// Permissions needed: s3:GetObject, s3:PutObject, s3:ListBucket,
// s3:ListBucketVersions, s3:DeleteObject and s3:DeleteObjectVersion on the
// prefix (and kms:GenerateDataKey + kms:Decrypt on the SSE key for SSE-KMS).
//
// The SDK retries failed requests. If a put-if-absent succeeds but its
// answer is lost, the retry reports [ErrExists] for the blob just written;
// callers creating fresh random names treat that like any other failure.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string
	sse    types.ServerSideEncryption
	kmsKey *string
}

var _ Store = (*S3)(nil)

// NewS3 returns a store for cfg. It loads the AWS configuration but makes
// no request, so a missing bucket or bad credentials show up on first use.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("store: s3: bucket is required")
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if err := validPrefix("prefix", prefix); err != nil {
		return nil, fmt.Errorf("store: s3: %w", err)
	}
	s := &S3{bucket: cfg.Bucket, prefix: prefix}
	switch cfg.SSE {
	case "":
	case string(types.ServerSideEncryptionAes256), string(types.ServerSideEncryptionAwsKms):
		s.sse = types.ServerSideEncryption(cfg.SSE)
	default:
		return nil, fmt.Errorf("store: s3: unknown SSE %q (want AES256 or aws:kms)", cfg.SSE)
	}
	if cfg.SSEKMSKeyID != "" {
		if s.sse != types.ServerSideEncryptionAwsKms {
			return nil, errors.New("store: s3: an SSE KMS key id needs SSE aws:kms")
		}
		s.kmsKey = aws.String(cfg.SSEKMSKeyID)
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("store: s3: endpoint %q is not an http(s) URL", cfg.Endpoint)
		}
	}

	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("store: s3: no region configured (set region= in the store URL or AWS_REGION)")
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
	})
	return s, nil
}

// Get implements [Store.Get].
func (s *S3) Get(ctx context.Context, name string) ([]byte, string, error) {
	if err := ValidName(name); err != nil {
		return nil, "", fmt.Errorf("get: %w", err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: s.key(name)})
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", name, s3Err(err, Cond{}))
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > MaxBlobSize {
		return nil, "", fmt.Errorf("get %s: %w: %d bytes", name, ErrTooLarge, n)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, MaxBlobSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("get %s: read body: %w", name, err)
	}
	if len(data) > MaxBlobSize {
		return nil, "", fmt.Errorf("get %s: %w: more than %d bytes", name, ErrTooLarge, MaxBlobSize)
	}
	return data, aws.ToString(out.ETag), nil
}

// Put implements [Store.Put].
func (s *S3) Put(ctx context.Context, name string, data []byte, cond Cond) (string, error) {
	if err := checkPut(name, data, cond); err != nil {
		return "", err
	}
	in := &s3.PutObjectInput{
		Bucket:               &s.bucket,
		Key:                  s.key(name),
		Body:                 bytes.NewReader(data),
		ContentLength:        aws.Int64(int64(len(data))),
		ContentType:          aws.String("application/octet-stream"),
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKey,
	}
	switch {
	case cond.IfAbsent:
		in.IfNoneMatch = aws.String("*")
	case cond.IfMatch != "":
		in.IfMatch = aws.String(cond.IfMatch)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return "", fmt.Errorf("put %s: %w", name, s3Err(err, cond))
	}
	return aws.ToString(out.ETag), nil
}

// Delete implements [Store.Delete]. It lists the object's versions and
// deletes each by version id (in an unversioned bucket the only one is
// "null"); on a server without ListObjectVersions it deletes the object.
// If the latest version is missing or a delete marker, Delete still removes
// the older versions and then reports [ErrNotFound].
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	key := s.key(name)
	versions, live, err := s.versions(ctx, *key)
	if errors.Is(err, errNotImplemented) {
		err = s.deleteUnversioned(ctx, key)
	} else if err == nil {
		// Oldest first, so that an older version never becomes the
		// current object while the delete runs; then list again, because
		// a write that raced the listing (a re-seal) adds a version. After
		// an empty listing, any later conditional write fails.
		for round := 0; err == nil && len(versions) > 0; round++ {
			if round == maxDeleteRounds {
				err = fmt.Errorf("%w: versions keep appearing", ErrConflict)
				break
			}
			for i := len(versions) - 1; i >= 0; i-- {
				v := versions[i]
				_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: key, VersionId: v})
				if err != nil {
					err = fmt.Errorf("version %s: %w", aws.ToString(v), s3Err(err, Cond{}))
					break
				}
			}
			if err == nil {
				versions, _, err = s.versions(ctx, *key)
			}
		}
		if err == nil && !live {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

var errNotImplemented = errors.New("not implemented by the server")

// versions lists the version ids (including delete markers) of key and
// whether its latest version is a live object.
// maxDeleteRounds bounds Delete's list-and-delete rounds.
const maxDeleteRounds = 5

func (s *S3) versions(ctx context.Context, key string) (ids []*string, live bool, err error) {
	in := &s3.ListObjectVersionsInput{Bucket: &s.bucket, Prefix: &key}
	for {
		out, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			if httpStatus(err) == http.StatusNotImplemented {
				return nil, false, errNotImplemented
			}
			return nil, false, fmt.Errorf("list versions: %w", s3Err(err, Cond{}))
		}
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == key {
				ids = append(ids, v.VersionId)
				live = live || aws.ToBool(v.IsLatest)
			}
		}
		for _, m := range out.DeleteMarkers {
			if aws.ToString(m.Key) == key {
				ids = append(ids, m.VersionId)
			}
		}
		next := aws.ToString(out.NextKeyMarker)
		if !aws.ToBool(out.IsTruncated) || next > key {
			return ids, live, nil
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
}

func (s *S3) deleteUnversioned(ctx context.Context, key *string) error {
	if _, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: key}); err != nil {
		return s3Err(err, Cond{})
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: key}); err != nil {
		return s3Err(err, Cond{})
	}
	return nil
}

// List implements [Store.List]. Object keys under the prefix that are not
// valid blob names are skipped.
func (s *S3) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := checkList(prefix, after, limit); err != nil {
		return nil, err
	}
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)}
	if after != "" {
		in.StartAfter = aws.String(s.prefix + after)
	}
	var out []string
	for len(out) < limit {
		in.MaxKeys = aws.Int32(int32(min(limit-len(out), listPage)))
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, s3Err(err, Cond{}))
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if ValidName(name) == nil && name > after && len(out) < limit {
				out = append(out, name)
			}
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			break
		}
		in.ContinuationToken = page.NextContinuationToken
	}
	return out, nil
}

func (s *S3) key(name string) *string { return aws.String(s.prefix + name) }

// s3Err maps an S3 error to the store's sentinels: a missing object is
// ErrNotFound; a failed precondition is ErrExists for put-if-absent and
// ErrConflict for compare-and-swap, as is a concurrent conditional write
// (409 ConditionalRequestConflict). Other errors are returned as they are.
func s3Err(err error, cond Cond) error {
	code := ""
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		code = ae.ErrorCode()
	}
	switch st := httpStatus(err); {
	case code == "NoSuchBucket":
		return err
	case st == http.StatusNotFound || code == "NoSuchKey" || code == "NotFound":
		if cond.IfMatch != "" {
			return fmt.Errorf("%w: %w", ErrConflict, ErrNotFound)
		}
		return ErrNotFound
	case st == http.StatusPreconditionFailed || code == "PreconditionFailed":
		if cond.IfAbsent {
			return ErrExists
		}
		return ErrConflict
	case st == http.StatusConflict && code == "ConditionalRequestConflict":
		return ErrConflict
	}
	return fmt.Errorf("s3: %w", err)
}

func httpStatus(err error) int {
	if re, ok := errors.AsType[*smithyhttp.ResponseError](err); ok {
		return re.HTTPStatusCode()
	}
	return 0
}
