// Package metrics defines the push server's Prometheus metrics on a
// registry of its own, and implements login.Observer.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// Metrics are the push server's metrics.
type Metrics struct {
	reg *prometheus.Registry

	Connections     prometheus.Gauge
	ConnsRejected   *prometheus.CounterVec // reason
	Sessions        *prometheus.CounterVec // state entered
	QRCreated       *prometheus.CounterVec // result: ok, error, rate_limited
	WeChatErrors    *prometheus.CounterVec // errcode ("transport" for non-API failures)
	NotifyResults   *prometheus.CounterVec // result, duplicate
	NotifyLatency   prometheus.Histogram
	PushDeliveries  *prometheus.CounterVec // target, outcome
	ConnCloseCodes  *prometheus.CounterVec // code
	GRPCAuthFailure prometheus.Counter
}

// New registers the metrics, plus Go and process collectors, on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	m.Connections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "scanlogin_ws_connections", Help: "Open browser WebSocket connections."})
	m.ConnsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_ws_rejected_total", Help: "WebSocket upgrades refused, by reason."}, []string{"reason"})
	m.Sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_login_sessions_total", Help: "Login sessions entering each state."}, []string{"state"})
	m.QRCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_qrcodes_total", Help: "QR code creations, by result (ok, error, rate_limited)."}, []string{"result"})
	m.WeChatErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_wechat_errors_total", Help: "Failed WeChat API calls, by errcode (transport: no answer)."}, []string{"errcode"})
	m.NotifyResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_notify_total", Help: "Notify calls, by result and whether the event was a duplicate."}, []string{"result", "duplicate"})
	m.NotifyLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "scanlogin_notify_to_frame_seconds",
		Help:    "From a Notify arriving to its frame being queued on the browser's connection.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)})
	m.PushDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_push_total", Help: "Push calls, by target kind and outcome (delivered, stored, none)."}, []string{"target", "outcome"})
	m.ConnCloseCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scanlogin_ws_server_closes_total", Help: "Connections the server closed, by close code."}, []string{"code"})
	m.GRPCAuthFailure = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scanlogin_grpc_auth_failures_total", Help: "gRPC calls refused for a missing or wrong bearer token."})
	for _, c := range []prometheus.Collector{m.Connections, m.ConnsRejected, m.Sessions, m.QRCreated, m.WeChatErrors,
		m.NotifyResults, m.NotifyLatency, m.PushDeliveries, m.ConnCloseCodes, m.GRPCAuthFailure} {
		f(c)
	}
	return m
}

// WatchRedis exports scanlogin_redis_up: 1 while up reports that the last
// health check reached Redis, else 0. Only a push server with REDIS_URL
// has it.
func (m *Metrics) WatchRedis(up func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scanlogin_redis_up", Help: "1 when the last health check (every second) reached Redis, else 0.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry the metrics live on, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SessionState implements login.Observer.
func (m *Metrics) SessionState(s login.State) { m.Sessions.WithLabelValues(string(s)).Inc() }

// NotifyResult implements login.Observer.
func (m *Metrics) NotifyResult(r login.Result, duplicate bool) {
	m.NotifyResults.WithLabelValues(r.String(), strconv.FormatBool(duplicate)).Inc()
}

// NotifyDelivered implements login.Observer.
func (m *Metrics) NotifyDelivered(d time.Duration) { m.NotifyLatency.Observe(d.Seconds()) }

// Pushed implements login.Observer.
func (m *Metrics) Pushed(target string, delivered int, stored bool) {
	outcome := "none"
	switch {
	case delivered > 0:
		outcome = "delivered"
	case stored:
		outcome = "stored"
	}
	m.PushDeliveries.WithLabelValues(target, outcome).Inc()
}
