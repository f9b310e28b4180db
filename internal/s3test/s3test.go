// Package s3test starts a real S3-compatible server (versitygw, an S3
// gateway over a posix directory) for tests: the store's conformance tests
// and the end-to-end tests run against it. It is imported only by tests.
//
// The binary is looked up in $GOBIN, $(go env GOPATH)/bin and $PATH; `make
// versitygw` installs the pinned version there. A missing binary fails the
// test: S3 support must not go untested silently.
package s3test

import (
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

	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
)

// Credentials and buckets of the test server.
const (
	AccessKey = "nitrosigner-test"
	SecretKey = "test-only-secret-not-a-credential"
	Region    = "us-east-1"
	// Buckets the server is started with; BucketVersioned has versioning on.
	BucketPlain     = "plain"
	BucketVersioned = "versioned"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is its http://127.0.0.1:PORT URL.
	Endpoint string
	dir      string
	cmd      *exec.Cmd
	exited   chan struct{}   // closed when the process has exited
	out      *syncbuf.Buffer // its stdout and stderr
}

// procAttr is set per platform (see s3test_linux.go).
var procAttr *syscall.SysProcAttr

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the server shared by a test binary, starting it on first
// use. Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = Start() })
	if shared.err != nil {
		t.Fatalf("versitygw: %v", shared.err)
	}
	return shared.srv
}

// StopShared stops the shared server if it was started.
func StopShared() {
	if shared.srv != nil {
		shared.srv.Stop()
	}
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

// Start runs a new server with both buckets created.
func Start() (*Server, error) {
	bin, err := findVersityGW()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken before versitygw binds it
		g, err := tryStart(bin)
		if err == nil {
			if err = g.createBuckets(); err == nil {
				return g, nil
			}
			g.Stop()
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStart(bin string) (*Server, error) {
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
	g := &Server{Endpoint: "http://" + addr, dir: dir, exited: make(chan struct{}), out: &syncbuf.Buffer{}}
	g.cmd = exec.Command(bin, "--port", addr, "--region", Region, "--quiet",
		"posix", "--versioning-dir", versions, root)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	g.cmd.SysProcAttr = procAttr
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
		resp, err := client.Get(g.Endpoint)
		if err == nil {
			resp.Body.Close()
			return g, nil
		}
		select {
		case <-g.exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("versitygw exited at start: %s", g.output())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 30s: %s", addr, g.output())
		}
	}
}

// Stop stops the server and removes its files.
func (g *Server) Stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	os.RemoveAll(g.dir)
}

// Client returns a raw S3 client for the server, for set-up and checks
// that go around the code under test.
func (g *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(g.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

func (g *Server) createBuckets() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := g.Client()
	for _, b := range []string{BucketPlain, BucketVersioned} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(BucketVersioned),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return fmt.Errorf("enable versioning on %s: %w", BucketVersioned, err)
	}
	return nil
}

// output is what versitygw printed, for error messages.
func (g *Server) output() string {
	if s := g.out.String(); s != "" {
		return s
	}
	return "(no output)"
}
