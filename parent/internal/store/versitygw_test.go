package store_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The S3 store is tested against a real versitygw (an S3 gateway over a
// posix directory), started once per test binary on first use and stopped
// by TestMain.
const (
	gwAccessKey = "nitrosigner-test"
	gwSecretKey = "test-only-secret-not-a-credential"
	gwRegion    = "us-east-1"
	// Buckets the server is started with.
	bucketPlain     = "plain"
	bucketVersioned = "versioned"
)

type versityGW struct {
	endpoint string
	dir      string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	out      *lockedBuffer // its stdout and stderr
}

// gwProcAttr is set per platform (see versitygw_linux_test.go).
var gwProcAttr *syscall.SysProcAttr

var gw struct {
	once sync.Once
	srv  *versityGW
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gw.srv != nil {
		gw.srv.stop()
	}
	os.Exit(code)
}

// versitygw returns the shared server, starting it on first use. A missing
// binary fails the test: S3 support must not go untested silently.
func versitygw(t testing.TB) *versityGW {
	t.Helper()
	gw.once.Do(func() { gw.srv, gw.err = startVersityGW() })
	if gw.err != nil {
		t.Fatalf("versitygw: %v", gw.err)
	}
	return gw.srv
}

// findVersityGW looks in $GOBIN, $(go env GOPATH)/bin and $PATH.
func findVersityGW() (string, error) {
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) == 2 {
			if lines[0] != "" {
				dirs = append(dirs, lines[0])
			}
			for p := range strings.SplitSeq(lines[1], string(os.PathListSeparator)) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("binary not found in %s or $PATH; run `make versitygw` "+
		"(go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", strings.Join(dirs, ", "))
}

func startVersityGW() (*versityGW, error) {
	bin, err := findVersityGW()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken before versitygw binds it
		g, err := tryStartVersityGW(bin)
		if err == nil {
			if err = g.createBuckets(); err == nil {
				return g, nil
			}
			g.stop()
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartVersityGW(bin string) (*versityGW, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()

	dir, err := os.MkdirTemp("", "versitygw-*")
	if err != nil {
		return nil, err
	}
	root, versions := filepath.Join(dir, "root"), filepath.Join(dir, "versions")
	for _, d := range []string{root, versions} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	g := &versityGW{endpoint: "http://" + addr, dir: dir, exited: make(chan struct{}), out: &lockedBuffer{}}
	g.cmd = exec.Command(bin, "--port", addr, "--region", gwRegion, "--quiet",
		"posix", "--versioning-dir", versions, root)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+gwAccessKey, "ROOT_SECRET_KEY="+gwSecretKey)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	g.cmd.SysProcAttr = gwProcAttr
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { g.cmd.Wait(); close(g.exited) }()

	// Poll until it answers HTTP (any status) or gives up.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(g.endpoint)
		if err == nil {
			resp.Body.Close()
			return g, nil
		}
		select {
		case <-g.exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("versitygw exited at start: %s", g.out)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 30s: %s", addr, g.out)
		}
	}
}

func (g *versityGW) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	os.RemoveAll(g.dir)
}

// client returns a raw S3 client for the server, for set-up and checks
// that go around the store.
func (g *versityGW) client() *s3.Client {
	return s3.New(s3.Options{
		Region:       gwRegion,
		BaseEndpoint: aws.String(g.endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(gwAccessKey, gwSecretKey, ""),
	})
}

func (g *versityGW) createBuckets() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := g.client()
	for _, b := range []string{bucketPlain, bucketVersioned} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(bucketVersioned),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return fmt.Errorf("enable versioning on %s: %w", bucketVersioned, err)
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if s == "" {
		return "(no output)"
	}
	return s
}
