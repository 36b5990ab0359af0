package callback

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the callback's Prometheus metrics. Register them on a registry
// of your own with NewMetrics.
type Metrics struct {
	requests      *prometheus.CounterVec   // method, code
	duration      prometheus.Histogram     //
	events        *prometheus.CounterVec   // type, result
	sigFailures   *prometheus.CounterVec   // param
	duplicates    prometheus.Counter       //
	replays       *prometheus.CounterVec   // reason
	rejected      *prometheus.CounterVec   // reason
	notify        *prometheus.HistogramVec // result
	userInfo      *prometheus.CounterVec   // result
	storeFailures prometheus.Counter       //
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_requests_total",
			Help: "HTTP requests to /wechat/callback by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wechat_callback_request_duration_seconds",
			Help: "Time from a request to /wechat/callback to its answer; WeChat gives up after 5 s.",
			// Fine where answers are, and around WeChat's 5 s.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 4, 4.5, 5},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_events_total",
			Help: "Verified events and messages processed (duplicates excluded), by type and result.",
		}, []string{"type", "result"}),
		sigFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_signature_failures_total",
			Help: "Requests rejected because signature or msg_signature did not verify.",
		}, []string{"param"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wechat_callback_duplicates_total",
			Help: "Duplicate events answered with the first copy's answer and not processed again.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_replays_rejected_total",
			Help: "Requests rejected as replays: a known timestamp and nonce with another body, or a timestamp outside the window.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_rejected_total",
			Help: "Requests rejected without processing, by reason.",
		}, []string{"reason"}),
		notify: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wechat_callback_notify_duration_seconds",
			Help:    "Time of PushService.Notify including retries, by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		userInfo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_user_info_total",
			Help: "user/info look-ups with FETCH_USER_INFO, by result (ok, error, slow).",
		}, []string{"result"}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wechat_callback_store_failures_total",
			Help: "Failed operations on the shared store (Redis).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.events, m.sigFailures, m.duplicates, m.replays,
		m.rejected, m.notify, m.userInfo, m.storeFailures)
	return m
}

// StoreFailed counts a failed operation on the shared duplicate store. It
// suits dedup.Fallback's OnError.
func (m *Metrics) StoreFailed() { m.storeFailures.Inc() }
