package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
)

// Metrics are the parent's request metrics. Label values come from fixed
// sets (registered gRPC method names and status codes), never from request
// content or error text.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// byMethod caches each method's OK counter and histogram (string →
	// *methodMetrics), so that a successful call costs no label hashing.
	// Methods come from the registered services: the map is bounded.
	byMethod sync.Map
}

type methodMetrics struct {
	ok       prometheus.Counter
	duration prometheus.Observer
}

// NewMetrics registers the request metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "nitrosigner",
			Name:      "grpc_requests_total",
			Help:      "Client gRPC calls handled by the parent, by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "nitrosigner",
			Name:      "grpc_request_duration_seconds",
			Help:      "Time from receiving a client call to answering it, by method.",
			Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *Metrics) observe(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	mm := m.method(method)
	if code == codes.OK {
		mm.ok.Inc()
	} else {
		m.requests.WithLabelValues(method, code.String()).Inc()
	}
	mm.duration.Observe(d.Seconds())
}

func (m *Metrics) method(name string) *methodMetrics {
	if v, ok := m.byMethod.Load(name); ok {
		return v.(*methodMetrics)
	}
	v, _ := m.byMethod.LoadOrStore(name, &methodMetrics{
		ok:       m.requests.WithLabelValues(name, codes.OK.String()),
		duration: m.duration.WithLabelValues(name),
	})
	return v.(*methodMetrics)
}

// Stats asks the enclave for its own resource use.
func (s *Service) Stats(ctx context.Context) (*enclavev1.GetStatsResponse, error) {
	var out enclavev1.GetStatsResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_GET_STATS, &enclavev1.GetStatsRequest{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EnclaveCollector re-exports the enclave's own counters (the enclave has
// no network of its own). Scrapes share one enclave call per second at most,
// so scraping faster, or many scrapers at once, costs the enclave nothing
// more.
type EnclaveCollector struct {
	svc     *Service
	timeout time.Duration

	mu      sync.Mutex
	last    *enclavev1.GetStatsResponse
	lastErr error
	lastAt  time.Time

	up   *prometheus.Desc
	cpu  *prometheus.Desc
	keys *prometheus.Desc
	heap *prometheus.Desc
	gor  *prometheus.Desc
	kms  *prometheus.Desc
	keks *prometheus.Desc
	// batched and batches: digest signatures made through the enclave's
	// batching of concurrent calls, and the batches they were made in.
	batched, batches *prometheus.Desc
}

var _ prometheus.Collector = (*EnclaveCollector)(nil)

// NewEnclaveCollector returns a collector that queries svc with timeout.
func NewEnclaveCollector(svc *Service, timeout time.Duration) *EnclaveCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("nitrosigner_enclave_"+name, help, labels, nil)
	}
	return &EnclaveCollector{
		svc:     svc,
		timeout: timeout,
		up:      d("up", "1 if the enclave answered the last scrape, else 0."),
		cpu:     d("cpu_seconds_total", "CPU time of the enclave process (its own getrusage).", "mode"),
		keys:    d("keys", "Keys held in the enclave's keyring."),
		heap:    d("heap_bytes", "Go heap in use in the enclave."),
		gor:     d("goroutines", "Goroutines in the enclave."),
		kms:     d("kms_calls_total", "KMS calls (GenerateDataKey, Decrypt) the enclave's keyring has made since it started."),
		keks:    d("keks", "KEKs unwrapped in the enclave."),
		batched: d("batched_signatures_total", "Digest signatures the enclave made through its batching of concurrent Sign calls (a lone call is a batch of one)."),
		batches: d("sign_batches_total", "Batches those signatures were made in; batched_signatures_total / sign_batches_total is the mean batch size."),
	}
}

// Describe implements prometheus.Collector.
func (c *EnclaveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.cpu, c.keys, c.heap, c.gor, c.kms, c.keks, c.batched, c.batches} {
		ch <- d
	}
}

// statsMaxAge is how long one GetStats answer serves scrapes.
const statsMaxAge = time.Second

func (c *EnclaveCollector) stats() (*enclavev1.GetStatsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastAt) < statsMaxAge {
		return c.last, c.lastErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.last, c.lastErr = c.svc.Stats(ctx)
	c.lastAt = time.Now()
	return c.last, c.lastErr
}

// Collect implements prometheus.Collector.
func (c *EnclaveCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, float64(st.GetUserCpuMicros())/1e6, "user")
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, float64(st.GetSystemCpuMicros())/1e6, "system")
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(st.GetKeys()))
	ch <- prometheus.MustNewConstMetric(c.heap, prometheus.GaugeValue, float64(st.GetHeapBytes()))
	ch <- prometheus.MustNewConstMetric(c.gor, prometheus.GaugeValue, float64(st.GetGoroutines()))
	ch <- prometheus.MustNewConstMetric(c.kms, prometheus.CounterValue, float64(st.GetKmsCalls()))
	ch <- prometheus.MustNewConstMetric(c.keks, prometheus.GaugeValue, float64(st.GetKeks()))
	ch <- prometheus.MustNewConstMetric(c.batched, prometheus.CounterValue, float64(st.GetBatchedSignatures()))
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(st.GetSignBatches()))
}
