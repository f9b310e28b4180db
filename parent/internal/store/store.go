// Package store is the parent's blob store for sealed keys and KEKs: a flat
// namespace of small named blobs with versioned, conditional writes.
//
// The parent is untrusted (DESIGN.md §1), and so is the store: the blobs it
// holds are sealed by the enclave, which rejects any blob that was swapped,
// altered or replayed under another identity. What the store must guarantee
// is that it never loses or half-writes a blob it acknowledged, and that its
// conditional writes are atomic, so that two writers cannot both create the
// same key and a re-seal cannot silently undo a concurrent change.
//
// # Backends
//
// [Open] takes a URL:
//
//	dir:///var/lib/nitrosigner/blobs
//	    A local directory ([Dir]); the default for development and single
//	    hosts. Writes are atomic and durable (temp file, fsync, rename,
//	    fsync of the directory).
//	s3://BUCKET/PREFIX?region=R&sse=aws:kms&sse-kms-key-id=ARN&endpoint=URL&path-style=true
//	    An S3 bucket ([S3]), credentials from the default AWS chain. Every
//	    query parameter is optional; see [S3Config] for their meaning.
//
// # Names
//
// A name is one or more "/"-separated segments of the characters a-z, 0-9,
// "_", "." and "-", at most [MaxNameLen] bytes in all. A segment may not be
// empty or start with "."; this rules out "..", "./x", leading and trailing
// "/" and hidden files. The project uses keys/key_<32 hex> and
// keks/kek_<32 hex>. Anything else is refused with [ErrInvalidName] before
// any I/O.
//
// # ETags
//
// Every version of a blob has an ETag, an opaque string that changes when the
// content changes. Pass it back in [Cond.IfMatch] to write only if nobody
// changed the blob in between (compare-and-swap). ETags are only meaningful
// to the store that issued them.
//
// # Concurrency
//
// All implementations are safe for concurrent use. Conditional writes are
// atomic against writers in other goroutines and, for [Dir], other processes
// using the same directory; for [S3], against any client of the bucket.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Limits.
const (
	// MaxNameLen is the longest valid blob name, in bytes.
	MaxNameLen = 200
	// MaxBlobSize is the largest blob the store writes or reads. A sealed
	// key is well under 1 KiB; the limit only bounds memory.
	MaxBlobSize = 1 << 20
)

// Sentinel errors. Errors returned by a [Store] wrap one of these when the
// condition applies; callers test with errors.Is.
var (
	// ErrNotFound means the named blob does not exist.
	ErrNotFound = errors.New("blob not found")
	// ErrExists means a put-if-absent found the name taken.
	ErrExists = errors.New("blob already exists")
	// ErrConflict means a compare-and-swap lost: the blob's current version
	// does not have the expected ETag. Re-read it and decide again.
	ErrConflict = errors.New("blob changed concurrently")
	// ErrInvalidName means a name (or List prefix) is not valid; see the
	// package documentation.
	ErrInvalidName = errors.New("invalid blob name")
	// ErrTooLarge means a blob exceeds [MaxBlobSize].
	ErrTooLarge = errors.New("blob too large")
)

// Cond makes a [Store.Put] conditional. The zero Cond writes
// unconditionally. At most one field may be set.
type Cond struct {
	// IfAbsent writes only if the name does not exist; otherwise Put fails
	// with [ErrExists]. Of any number of racing writers exactly one wins.
	IfAbsent bool
	// IfMatch, if not empty, writes only if the blob's current ETag is
	// IfMatch; otherwise Put fails with [ErrConflict]. If the blob does not
	// exist, the error wraps both [ErrConflict] and [ErrNotFound].
	IfMatch string
}

// Store is a blob store. See the package documentation for names, ETags and
// concurrency.
type Store interface {
	// Get returns the blob and its ETag. It fails with ErrNotFound when the
	// name does not exist, and with ErrTooLarge if the stored object is
	// larger than MaxBlobSize.
	Get(ctx context.Context, name string) (data []byte, etag string, err error)
	// Put writes a blob atomically (readers see the old or the new content,
	// never a mix) and durably, subject to cond, and returns the new ETag.
	// Errors: ErrInvalidName, ErrTooLarge, ErrExists (cond.IfAbsent) and
	// ErrConflict (cond.IfMatch; see [Cond]).
	Put(ctx context.Context, name string, data []byte, cond Cond) (etag string, err error)
	// Delete removes the blob and every version the store keeps of it
	// (crypto-shredding a sealed key). Deleting an absent name fails with
	// ErrNotFound.
	Delete(ctx context.Context, name string) error
	// List returns up to limit names that start with prefix and sort
	// strictly after `after`, in byte-wise lexical order. Page through a
	// listing by passing the last name of one page as `after` of the next;
	// a page shorter than limit is the last. prefix and after may be empty;
	// limit must be positive.
	List(ctx context.Context, prefix, after string, limit int) ([]string, error)
}

// ValidName reports whether name is a valid blob name; its error wraps
// [ErrInvalidName] and says what is wrong.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: name is empty", ErrInvalidName)
	}
	if err := checkChars(name); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w %q: empty segment (leading, trailing or double \"/\")", ErrInvalidName, name)
		case seg[0] == '.':
			return fmt.Errorf("%w %q: segment %q starts with \".\"", ErrInvalidName, name, seg)
		}
	}
	return nil
}

// validPrefix checks a List prefix or start name: like a name, but it may be
// empty, end in "/" or stop in the middle of a segment.
func validPrefix(what, s string) error {
	if s == "" {
		return nil
	}
	if err := checkChars(s); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if s[0] == '/' || strings.Contains(s, "//") || strings.Contains(s, "/.") || s[0] == '.' {
		return fmt.Errorf("%w: %s %q cannot match any valid name", ErrInvalidName, what, s)
	}
	return nil
}

func checkChars(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidName, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-' || c == '/') {
			return fmt.Errorf("%w %q: character %q at offset %d is not allowed (use a-z 0-9 _ . - /)",
				ErrInvalidName, s, c, i)
		}
	}
	return nil
}

// checkPut validates the arguments every Put shares.
func checkPut(name string, data []byte, cond Cond) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if len(data) > MaxBlobSize {
		return fmt.Errorf("put %s: %w: %d bytes, the limit is %d", name, ErrTooLarge, len(data), MaxBlobSize)
	}
	if cond.IfAbsent && cond.IfMatch != "" {
		return fmt.Errorf("put %s: IfAbsent and IfMatch are mutually exclusive", name)
	}
	return nil
}

// checkList validates List's arguments.
func checkList(prefix, after string, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("list: limit %d is not positive", limit)
	}
	if err := validPrefix("prefix", prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if len(after) > MaxNameLen {
		return fmt.Errorf("list: after: %w: %d bytes long, the limit is %d", ErrInvalidName, len(after), MaxNameLen)
	}
	return nil
}

// Open opens the store a URL names (see the package documentation). For
// s3:// it loads the default AWS configuration (environment, shared files,
// IMDSv2 role) but makes no request. Malformed URLs fail with a message
// naming the problem.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: parse URL: %w", err)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" || u.Opaque != "" {
			return nil, fmt.Errorf("store: %q: want dir:///absolute/path (three slashes)", rawURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("store: %q: dir URLs take no query or fragment", rawURL)
		}
		return NewDir(u.Path)
	case "s3":
		cfg, err := parseS3URL(u)
		if err != nil {
			return nil, fmt.Errorf("store: %q: %w", rawURL, err)
		}
		return NewS3(ctx, cfg)
	default:
		return nil, fmt.Errorf("store: %q: unknown scheme %q (want dir or s3)", rawURL, u.Scheme)
	}
}

// parseS3URL turns s3://BUCKET/PREFIX?... into an S3Config.
func parseS3URL(u *url.URL) (S3Config, error) {
	if u.Host == "" {
		return S3Config{}, errors.New("missing bucket (want s3://BUCKET/PREFIX)")
	}
	if u.User != nil || u.Fragment != "" {
		return S3Config{}, errors.New("s3 URLs take no user info or fragment")
	}
	cfg := S3Config{Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return S3Config{}, fmt.Errorf("query: %w", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return S3Config{}, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
		switch k {
		case "region":
			cfg.Region = v[0]
		case "sse":
			cfg.SSE = v[0]
		case "sse-kms-key-id":
			cfg.SSEKMSKeyID = v[0]
		case "endpoint":
			cfg.Endpoint = v[0]
		case "path-style":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return S3Config{}, fmt.Errorf("path-style=%q is not a boolean", v[0])
			}
			cfg.PathStyle = b
		default:
			return S3Config{}, fmt.Errorf("unknown query parameter %q (want region, sse, sse-kms-key-id, endpoint, path-style)", k)
		}
	}
	return cfg, nil
}
