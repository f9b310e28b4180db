package e2e_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave"
	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	"github.com/nitrosigner/nitrosigner/internal/s3test"
	"github.com/nitrosigner/nitrosigner/internal/transport"
	"github.com/nitrosigner/nitrosigner/parent"
)

// world is the simulated AWS around one parent+enclave pair: an NSM
// simulator, a KMS simulator (HTTPS, SigV4, attestation-gated policy) with
// one key, and a blob directory. The enclave reaches KMS through the
// parent's forwarder, as on AWS.
type world struct {
	sim      *nsmsim.Simulator
	kms      *kmssim.Server
	kmsURL   string
	kmsPool  *x509.CertPool
	keyARN   string
	storeDir string
	storeURL string
	dir      string // sockets

	enclaveURL, parentURL, forwardURL string
	// linkTap, when set, records every byte between parent and enclave;
	// kmsTap between the enclave and the parent's KMS forwarder.
	linkTap, kmsTap *tap
}

type worldOptions struct {
	// policy is the KMS key policy; empty = KMS's default (account root).
	policy []byte
	// image is the simulated enclave binary (PCR0/1/2 derive from it).
	image []byte
	// debug runs the simulated enclave in debug mode.
	debug bool
	// tapLink records the parent<->enclave traffic; tapKMS the enclave's
	// traffic to KMS through the parent's forwarder.
	tapLink, tapKMS bool
	// s3 keeps the sealed blobs in S3 (versitygw) instead of a directory.
	s3 bool
}

var defaultImage = []byte("nitrosigner e2e enclave image")

func newWorld(t testing.TB, o worldOptions) *world {
	t.Helper()
	if o.image == nil {
		o.image = defaultImage
	}
	w := &world{dir: sockDir(t), storeDir: t.TempDir()}
	sim, err := nsmsim.New(nsmsim.Config{Image: o.image, Debug: o.debug, DevicePath: filepath.Join(t.TempDir(), "no-nsm")})
	require.NoError(t, err)
	t.Cleanup(func() { sim.Close() })
	w.sim = sim
	// Real KMS accepts debug-mode documents and lets the key policy decide
	// (their PCR0 is zero); the simulator must be told to.
	w.kmsURL, w.kmsPool, w.kms = kmssimtest.Start(t, kmssim.Config{NSMRoots: []*x509.Certificate{sim.Root()}, AllowDebug: o.debug})
	w.keyARN, err = w.kms.CreateKey(kmssim.KeyOptions{Description: "e2e", Policy: o.policy})
	require.NoError(t, err)
	w.enclaveURL = "unix://" + filepath.Join(w.dir, "enclave.sock")
	w.parentURL = "unix://" + filepath.Join(w.dir, "parent.sock")
	w.forwardURL = "unix://" + filepath.Join(w.dir, "kms.sock")
	if o.tapLink {
		w.linkTap = newTap(t, "unix://"+filepath.Join(w.dir, "tap.sock"), w.enclaveURL)
	}
	if o.tapKMS {
		w.kmsTap = newTap(t, "unix://"+filepath.Join(w.dir, "kmstap.sock"), w.forwardURL)
	}
	w.storeURL = "dir://" + w.storeDir
	if o.s3 {
		gw := s3test.Shared(t)
		// The S3 store takes credentials from the default AWS chain.
		t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
		t.Setenv("AWS_SESSION_TOKEN", "")
		w.storeURL = "s3://" + s3test.BucketVersioned + "/" + filepath.Base(w.dir) + "?region=" + s3test.Region +
			"&endpoint=" + gw.Endpoint + "&path-style=true"
	}
	return w
}

// enclaveKMSURL is where the enclave dials KMS (through the tap when
// recording).
func (w *world) enclaveKMSURL() string {
	if w.kmsTap != nil {
		return w.kmsTap.url
	}
	return w.forwardURL
}

// parentEnclaveURL is where the parent dials the enclave (through the tap
// when recording).
func (w *world) parentEnclaveURL() string {
	if w.linkTap != nil {
		return w.linkTap.url
	}
	return w.enclaveURL
}

func (w *world) enclaveConfig(t testing.TB) enclave.Config {
	return enclave.Config{
		Listen:      w.enclaveURL,
		Attester:    enclave.NewNSMAttester(w.sim),
		Version:     "e2e",
		Logger:      testLog(t),
		Region:      kmssimtest.Region,
		KMSEndpoint: "https://kms." + kmssimtest.Region + ".amazonaws.com",
		KMSDial:     w.enclaveKMSURL(),
		KMSKeys:     []string{w.keyARN},
		KMSRoots:    w.kmsPool,
	}
}

func (w *world) parentConfig() parent.Config {
	u, _ := url.Parse(w.kmsURL)
	return parent.Config{
		Listen:           w.parentURL,
		Enclave:          w.parentEnclaveURL(),
		CallTimeout:      5 * time.Second,
		Store:            w.storeURL,
		KMSForwardListen: w.forwardURL,
		KMSForwardTarget: u.Host,
		Credentials:      credentials.NewStaticCredentialsProvider(kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey, ""),
	}
}

// start runs enclave and parent and dials the parent.
func (w *world) start(t testing.TB) *stack {
	t.Helper()
	startEnclaveCfg(t, w.enclaveConfig(t))
	startParent(t, w.parentConfig())
	s := &stack{sim: w.sim, enclaveURL: w.enclaveURL, parentURL: w.parentURL, world: w}
	s.conn, s.client = dialParent(t, w.parentURL)
	return s
}

// tap is a byte-recording relay between two transport addresses.
type tap struct {
	url string
	mu  sync.Mutex
	buf bytes.Buffer
}

func newTap(t testing.TB, listenURL, targetURL string) *tap {
	t.Helper()
	tp := &tap{url: listenURL}
	ctx, cancel := context.WithCancel(context.Background())
	l, err := transport.Listen(ctx, listenURL)
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := transport.Dial(ctx, targetURL)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				copyRec := func(dst, src net.Conn) {
					_, _ = io.Copy(io.MultiWriter(dst, tp), src)
					done <- struct{}{}
				}
				go copyRec(up, c)
				go copyRec(c, up)
				select {
				case <-done:
				case <-ctx.Done():
				}
			})
		}
	})
	return tp
}

func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.buf.Write(p)
}

func (tp *tap) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.buf.Bytes())
}

// startEnclaveCfg runs enclave.Run with cfg until the test ends (or stop
// is called).
func startEnclaveCfg(t testing.TB, cfg enclave.Config) (stop func()) {
	t.Helper()
	listening := make(chan struct{})
	cfg.OnListen = func(net.Addr) { close(listening) }
	return runService(t, "enclave", 30*time.Second, listening, func(ctx context.Context) error { return enclave.Run(ctx, cfg) })
}

// runService runs run on its own goroutine until the test ends or stop is
// called, which cancels its context and checks that it returns nil. It
// returns once listening is closed, and fails the test if run returns first
// or nothing listens within limit.
func runService(t testing.TB, name string, limit time.Duration, listening <-chan struct{}, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("%s exited: %v", name, err)
	case <-time.After(limit):
		cancel()
		t.Fatalf("%s did not start", name)
	}
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
	t.Cleanup(stop)
	return stop
}
