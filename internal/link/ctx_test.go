package link_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

type ctxKey struct{}

// TestRequestContext checks that the lazy request context behaves like
// context.WithDeadline, whichever of its methods is used first.
func TestRequestContext(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, parent context.Context, cancelParent func())
	}{
		{"deadline via Done", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(30*time.Millisecond))
			defer release()
			assert.NoError(t, ctx.Err())
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
				t.Fatal("Done not closed at the deadline")
			}
			assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
		}},
		{"deadline via Err", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(10*time.Millisecond))
			defer release()
			time.Sleep(20 * time.Millisecond)
			assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
			select {
			case <-ctx.Done():
			default:
				t.Fatal("Done not closed after Err reported the deadline")
			}
		}},
		{"parent cancel via Done", func(t *testing.T, parent context.Context, cancelParent func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(time.Hour))
			defer release()
			done := ctx.Done()
			cancelParent()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Fatal("Done not closed when the parent was cancelled")
			}
			assert.ErrorIs(t, ctx.Err(), context.Canceled)
		}},
		{"parent cancel via Err", func(t *testing.T, parent context.Context, cancelParent func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(time.Hour))
			defer release()
			cancelParent()
			assert.ErrorIs(t, ctx.Err(), context.Canceled)
		}},
		{"release", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(time.Hour))
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			release()
			<-child.Done()
			assert.ErrorIs(t, ctx.Err(), context.Canceled)
			assert.ErrorIs(t, child.Err(), context.Canceled)
		}},
		{"release before Done", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(time.Hour))
			release()
			assert.ErrorIs(t, ctx.Err(), context.Canceled)
			<-ctx.Done()
		}},
		{"derived context", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(20*time.Millisecond))
			defer release()
			child, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			dl, ok := child.Deadline()
			assert.True(t, ok)
			assert.WithinDuration(t, time.Now().Add(20*time.Millisecond), dl, 20*time.Millisecond)
			select {
			case <-child.Done():
			case <-time.After(2 * time.Second):
				t.Fatal("child not cancelled at the parent's deadline")
			}
			assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
			assert.ErrorIs(t, context.Cause(child), context.DeadlineExceeded)
		}},
		{"value", func(t *testing.T, parent context.Context, _ func()) {
			ctx, release := link.NewRequestContext(parent, time.Now().Add(time.Hour))
			defer release()
			assert.Equal(t, "v", ctx.Value(ctxKey{}))
			_ = ctx.Done()
			assert.Equal(t, "v", ctx.Value(ctxKey{}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "v"))
			defer cancel()
			require.NotNil(t, parent)
			tt.run(t, parent, cancel)
		})
	}
}
