// Package creds hands the enclave the AWS credentials it signs its KMS
// requests with.
//
// The enclave has no credentials of its own and cannot reach the instance
// metadata service. The parent takes its role's credentials from the
// default AWS chain (IMDSv2 on EC2; the environment in development) and
// pushes them over the link, again before they expire and whenever the
// enclave reports it has none (after a restart). The credentials let the
// enclave call KMS as the parent's role; the key policy still admits only
// requests carrying the attested image's document, so they are not a path
// to key material.
package creds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
)

// Caller sends one request to the enclave (satisfied by *link.Client).
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp proto.Message) error
}

// ExpiryWindow is how long before their real expiry cached credentials
// are refreshed; the cache reports the expiry that much early, so the
// enclave stops using them, and the parent pushes new ones, well before
// KMS would refuse them.
const ExpiryWindow = 10 * time.Minute

// Pusher pushes credentials to the enclave. It is safe for concurrent use.
type Pusher struct {
	provider aws.CredentialsProvider
	enclave  Caller
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	expires  time.Time
	lastPush time.Time
}

// New returns a pusher that reads credentials from provider.
func New(provider aws.CredentialsProvider, enclave Caller, log *slog.Logger) *Pusher {
	if log == nil {
		log = slog.Default()
	}
	// A cache that refreshes well before expiry; a provider that is a
	// cache already is used as is, not cached twice.
	if _, ok := provider.(*aws.CredentialsCache); !ok {
		provider = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = ExpiryWindow })
	}
	return &Pusher{provider: provider, enclave: enclave, log: log, now: time.Now}
}

// Push retrieves the current credentials and hands them to the enclave.
func (p *Pusher) Push(ctx context.Context) error { return p.push(ctx, false) }

func (p *Pusher) push(ctx context.Context, unlessRecent bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if unlessRecent && !p.lastPush.IsZero() && p.now().Sub(p.lastPush) < time.Second {
		return nil
	}
	c, err := p.provider.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("creds: retrieve AWS credentials: %w", err)
	}
	req := &enclavev1.SetCredentialsRequest{
		AccessKeyId: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
	}
	if c.CanExpire {
		req.ExpiresUnixMs = c.Expires.UnixMilli()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.enclave.Call(ctx, uint16(enclavev1.Method_METHOD_SET_CREDENTIALS), req, &enclavev1.SetCredentialsResponse{}); err != nil {
		return fmt.Errorf("creds: push to enclave: %w", err)
	}
	p.expires = c.Expires
	if !c.CanExpire {
		p.expires = time.Time{}
	}
	p.lastPush = p.now()
	p.log.DebugContext(ctx, "AWS credentials pushed to the enclave", "source", c.Source, "expires", p.expires)
	return nil
}

// Refresh pushes unless a push succeeded within the last second: many
// requests that find the enclave without credentials at once (after a
// restart) then cause one push, not one each.
func (p *Pusher) Refresh(ctx context.Context) error { return p.push(ctx, true) }

// next is when to push again: when the pushed credentials reach their
// expiry as the cache reports it (which is ExpiryWindow before the real
// one, so the cache then hands out fresh credentials), and at least every
// interval (which also covers an enclave that restarted unnoticed).
func (p *Pusher) next(interval time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := interval
	if !p.expires.IsZero() {
		if until := p.expires.Sub(p.now()); until < d {
			d = max(until, time.Second)
		}
	}
	return d
}

// Run pushes credentials now and then again as they are refreshed, at least
// every interval, until ctx ends. Failures are logged and retried after a
// short pause.
func (p *Pusher) Run(ctx context.Context, interval time.Duration) {
	for {
		wait := p.next(interval)
		if err := p.Push(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			p.log.WarnContext(ctx, "pushing AWS credentials failed; retrying", "err", err)
			wait = min(wait, 5*time.Second)
		} else {
			wait = p.next(interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
