package miniprogram

import "github.com/prometheus/client_golang/prometheus"

// metrics are the API's Prometheus metrics.
type metrics struct {
	requests      *prometheus.CounterVec   // endpoint, outcome
	wechat        *prometheus.CounterVec   // result
	notify        *prometheus.HistogramVec // event, result
	storeFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_miniprogram_requests_total",
			Help: "Mini Program API requests by endpoint (scan, confirm) and outcome (ok, confirmed, cancelled, or the error code).",
		}, []string{"endpoint", "outcome"}),
		wechat: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wechat_callback_jscode2session_total",
			Help: "Login code exchanges by result (ok, invalid_code, rate_limited, misconfigured, unavailable).",
		}, []string{"result"}),
		notify: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wechat_callback_miniprogram_notify_duration_seconds",
			Help:    "Time of PushService.Notify for the Mini Program API, including retries, by event and result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"event", "result"}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wechat_callback_miniprogram_store_failures_total",
			Help: "Failed operations on the Mini Program API's store (Redis), each answered 503.",
		}),
	}
	reg.MustRegister(m.requests, m.wechat, m.notify, m.storeFailures)
	return m
}
