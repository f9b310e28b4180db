package proxy_test

// Store failures get status codes a user can act on, and messages without
// the store's detail.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// One oversized object under keys/ (a swapped or corrupted blob: the store
// is untrusted for integrity) makes every ListKeys page that reaches it
// fail with Internal, for good, and GetKey answer Internal instead of
// DataLoss ("a stored sealed blob was refused").
func TestOversizedBlobIsDataLoss(t *testing.T) {
	svc, _, st := newLifecycle(t)
	putKeys(t, st, keyID(1), keyID(3))
	root := st.(*store.Dir).Root()
	require.NoError(t, os.WriteFile(filepath.Join(root, "keys", keyID(2)), make([]byte, store.MaxBlobSize+1), 0o600))

	_, err := svc.GetKey(context.Background(), &signerv1.GetKeyRequest{KeyId: keyID(2)})
	assert.Equal(t, codes.DataLoss, status.Code(err), "GetKey: %v", err)

	list, err := svc.ListKeys(context.Background(), &signerv1.ListKeysRequest{})
	require.NoError(t, err, "ListKeys should skip the refused blob as it skips other DataLoss blobs")
	assert.Len(t, list.GetKeys(), 2)
}

// Freeze and Unfreeze copy the raw store error into the client's message:
// file paths, S3 endpoints, bucket, account and role ARNs (AccessDenied
// texts) reach any client, unlike storeError, which logs them and answers
// a fixed text.
func TestFreezeErrorKeepsStoreDetailInTheLog(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	secretish := "api error AccessDenied: User: arn:aws:sts::123456789012:assumed-role/nitrosigner-parent/i-0abc is not authorized on arn:aws:s3:::corp-blobs/control/freeze"
	s, _ := newFreezeService(t, detailStore{Store: dir, err: errors.New(secretish)}, false)
	_, err = s.Freeze(context.Background(), &signerv1.FreezeRequest{Reason: "incident"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.NotContains(t, status.Convert(err).Message(), "arn:aws", "store error detail reaches the client")
	_, err = s.Unfreeze(context.Background(), &signerv1.UnfreezeRequest{})
	assert.NotContains(t, status.Convert(err).Message(), "arn:aws", "store error detail reaches the client")
}

type detailStore struct {
	store.Store
	err error
}

func (d detailStore) Put(context.Context, string, []byte, store.Cond) (string, error) {
	return "", d.err
}
