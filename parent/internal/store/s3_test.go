package store_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/s3test"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
)

var prefixSeq atomic.Int64

// newS3 returns an S3 store on the shared versitygw under a fresh prefix,
// and that prefix.
func newS3(t testing.TB, bucket string, mod func(*store.S3Config)) (*store.S3, string) {
	t.Helper()
	g := s3test.Shared(t)
	prefix := fmt.Sprintf("t%d/", prefixSeq.Add(1))
	cfg := store.S3Config{
		Bucket:      bucket,
		Prefix:      prefix,
		Region:      s3test.Region,
		Endpoint:    g.Endpoint,
		PathStyle:   true,
		Credentials: credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := store.NewS3(context.Background(), cfg)
	require.NoError(t, err)
	return s, prefix
}

func TestS3Conformance(t *testing.T) {
	for _, bucket := range []string{s3test.BucketPlain, s3test.BucketVersioned} {
		t.Run(bucket, func(t *testing.T) {
			testStore(t, func(t *testing.T) store.Store {
				s, _ := newS3(t, bucket, nil)
				return s
			})
		})
	}
}

// versionsOf lists the version ids and delete markers S3 keeps for key.
func versionsOf(t *testing.T, c *s3.Client, bucket, key string) []string {
	t.Helper()
	out, err := c.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{
		Bucket: aws.String(bucket), Prefix: aws.String(key),
	})
	require.NoError(t, err)
	var ids []string
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			ids = append(ids, "v:"+aws.ToString(v.VersionId))
		}
	}
	for _, m := range out.DeleteMarkers {
		if aws.ToString(m.Key) == key {
			ids = append(ids, "m:"+aws.ToString(m.VersionId))
		}
	}
	return ids
}

// TestS3DeleteShredsVersions checks that Delete leaves no old version that
// could bring a deleted sealed key back.
func TestS3DeleteShredsVersions(t *testing.T) {
	ctx := context.Background()
	s, prefix := newS3(t, s3test.BucketVersioned, nil)
	c := s3test.Shared(t).Client()
	key := prefix + "keys/key_1"
	for _, v := range []string{"v1", "v2", "v3"} {
		_, err := s.Put(ctx, "keys/key_1", []byte(v), store.Cond{})
		require.NoError(t, err)
	}
	// A sibling whose key has key_1's as a prefix must survive.
	_, err := s.Put(ctx, "keys/key_10", []byte("other"), store.Cond{})
	require.NoError(t, err)
	require.Len(t, versionsOf(t, c, s3test.BucketVersioned, key), 3, "the bucket keeps versions")

	require.NoError(t, s.Delete(ctx, "keys/key_1"))
	assert.Empty(t, versionsOf(t, c, s3test.BucketVersioned, key))
	data, _, err := s.Get(ctx, "keys/key_10")
	require.NoError(t, err)
	assert.Equal(t, []byte("other"), data)

	// Deleted behind the store's back (a delete marker on top of old
	// versions): Delete reports ErrNotFound but still shreds the rest.
	_, err = s.Put(ctx, "keys/key_2", []byte("v1"), store.Cond{})
	require.NoError(t, err)
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s3test.BucketVersioned), Key: aws.String(prefix + "keys/key_2")})
	require.NoError(t, err)
	require.Len(t, versionsOf(t, c, s3test.BucketVersioned, prefix+"keys/key_2"), 2, "version + delete marker")
	require.ErrorIs(t, s.Delete(ctx, "keys/key_2"), store.ErrNotFound)
	assert.Empty(t, versionsOf(t, c, s3test.BucketVersioned, prefix+"keys/key_2"))
}

func TestS3ForeignObjects(t *testing.T) {
	ctx := context.Background()
	s, prefix := newS3(t, s3test.BucketPlain, nil)
	c := s3test.Shared(t).Client()
	put := func(key string, data []byte) {
		t.Helper()
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s3test.BucketPlain), Key: aws.String(key), Body: bytes.NewReader(data)})
		require.NoError(t, err)
	}
	put(prefix+"keys/Not A Name", []byte("x"))
	put(prefix+"keys/huge", make([]byte, store.MaxBlobSize+1))
	put("outside/keys/key_1", []byte("x"))
	_, err := s.Put(ctx, "keys/key_1", []byte("x"), store.Cond{})
	require.NoError(t, err)

	names, err := s.List(ctx, "", "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"keys/huge", "keys/key_1"}, names, "invalid names and other prefixes are skipped")
	_, _, err = s.Get(ctx, "keys/huge")
	require.ErrorIs(t, err, store.ErrTooLarge)
}

func TestS3MissingBucket(t *testing.T) {
	s, _ := newS3(t, "no-such-bucket", nil)
	_, _, err := s.Get(context.Background(), "keys/key_1")
	require.Error(t, err)
	assert.NotErrorIs(t, err, store.ErrNotFound, "a missing bucket is a configuration error, not a missing key")
	assert.ErrorContains(t, err, "NoSuchBucket")
}

// TestS3SSE checks that the SSE settings reach S3 as request headers.
// (versitygw 1.8.0 accepts and ignores them: HeadObject reports no
// encryption. AWS honours them.)
func TestS3SSE(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		sse, kmsKey      string
		wantSSE, wantKey string
	}{
		{sse: "", wantSSE: "", wantKey: ""},
		{sse: "AES256", wantSSE: "AES256"},
		{sse: "aws:kms", wantSSE: "aws:kms"},
		{sse: "aws:kms", kmsKey: "arn:aws:kms:us-east-1:111122223333:key/test", wantSSE: "aws:kms", wantKey: "arn:aws:kms:us-east-1:111122223333:key/test"},
	}
	for _, tt := range tests {
		t.Run(tt.sse+tt.kmsKey, func(t *testing.T) {
			rt := &hookTransport{}
			s, _ := newS3(t, s3test.BucketPlain, func(c *store.S3Config) {
				c.SSE, c.SSEKMSKeyID = tt.sse, tt.kmsKey
				c.HTTPClient = &http.Client{Transport: rt}
			})
			_, err := s.Put(ctx, "keys/key_1", []byte("x"), store.Cond{})
			require.NoError(t, err)
			reqs := rt.requests()
			require.Len(t, reqs, 1)
			assert.Equal(t, http.MethodPut, reqs[0].Method)
			assert.Equal(t, tt.wantSSE, reqs[0].Header.Get("X-Amz-Server-Side-Encryption"))
			assert.Equal(t, tt.wantKey, reqs[0].Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
		})
	}
}

// TestS3DeleteWithoutVersionsAPI covers servers that do not implement
// ListObjectVersions (501): Delete falls back to HEAD + DELETE.
func TestS3DeleteWithoutVersionsAPI(t *testing.T) {
	ctx := context.Background()
	rt := &hookTransport{intercept: func(r *http.Request) *http.Response {
		if r.URL.Query().Has("versions") {
			return &http.Response{StatusCode: http.StatusNotImplemented, Body: http.NoBody, Header: http.Header{}, Request: r}
		}
		return nil
	}}
	s, _ := newS3(t, s3test.BucketPlain, func(c *store.S3Config) { c.HTTPClient = &http.Client{Transport: rt} })
	_, err := s.Put(ctx, "keys/key_1", []byte("x"), store.Cond{})
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "keys/key_1"))
	_, _, err = s.Get(ctx, "keys/key_1")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "keys/key_1"), store.ErrNotFound)
	// Put; list versions (501), HEAD, DELETE; Get; list versions (501), HEAD (404).
	var methods []string
	for _, r := range rt.requests() {
		methods = append(methods, r.Method)
	}
	assert.Equal(t, []string{"PUT", "GET", "HEAD", "DELETE", "GET", "GET", "HEAD"}, methods)
}

// hookTransport records requests and can answer some itself.
type hookTransport struct {
	intercept func(*http.Request) *http.Response // nil result: pass on
	mu        sync.Mutex
	reqs      []*http.Request
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
	if h.intercept != nil {
		if resp := h.intercept(r); resp != nil {
			return resp, nil
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (h *hookTransport) requests() []*http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

func TestOpenS3(t *testing.T) {
	ctx := context.Background()
	g := s3test.Shared(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_REGION", "")
	prefix := fmt.Sprintf("open%d", prefixSeq.Add(1))
	s, err := store.Open(ctx, "s3://"+s3test.BucketPlain+"/"+prefix+"?region="+s3test.Region+"&endpoint="+g.Endpoint+"&path-style=true")
	require.NoError(t, err)
	require.IsType(t, (*store.S3)(nil), s)
	_, err = s.Put(ctx, "keys/key_1", []byte("via url"), store.Cond{IfAbsent: true})
	require.NoError(t, err)

	out, err := g.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s3test.BucketPlain), Key: aws.String(prefix + "/keys/key_1")})
	require.NoError(t, err, "the prefix gets a trailing slash")
	out.Body.Close()

	_, err = store.Open(ctx, "s3://"+s3test.BucketPlain+"/x")
	require.ErrorContains(t, err, "no region")
}

func BenchmarkS3(b *testing.B) {
	s, _ := newS3(b, s3test.BucketPlain, nil)
	benchStore(b, s)
}

func BenchmarkS3Versioned(b *testing.B) {
	s, _ := newS3(b, s3test.BucketVersioned, nil)
	benchStore(b, s)
}

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}
