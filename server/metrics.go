package server

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/signalrd/signalrd/server/upstream"
	"github.com/signalrd/signalrd/transport"
)

// metrics are registered on a registry the server owns (never the global one). Label sets are
// bounded: instance names come from the configuration; transports, protocols, reasons,
// directions, REST operations and status classes from fixed sets in this package.
// docs/operations.md lists every metric.
type metrics struct {
	reg           *prometheus.Registry
	clients       *prometheus.GaugeVec   // instance, transport, protocol
	clientOpens   *prometheus.CounterVec // instance, transport
	clientCloses  *prometheus.CounterVec // instance, reason
	serverSockets *prometheus.GaugeVec   // instance
	messagesIn    *prometheus.CounterVec // instance, from (client|server)
	bytesIn       *prometheus.CounterVec // instance, from
	messagesOut   *prometheus.CounterVec // instance, to (client|server)
	bytesOut      *prometheus.CounterVec // instance, to
	restRequests  *prometheus.CounterVec // instance, operation, status
	reconnects    *prometheus.CounterVec // instance: stateful reconnects accepted
	migrations    *prometheus.CounterVec // instance: clients migrated between app servers
}

// Close reasons counted in signalrd_client_closes_total.
const (
	closeReasonClient       = "client"
	closeReasonApp          = "app_server"
	closeReasonSlowConsumer = "slow_consumer"
	closeReasonTooLarge     = "message_too_large"
	closeReasonServerLost   = "app_server_lost"
	closeReasonService      = "service"
	closeReasonHandshake    = "handshake_failed"
	closeReasonTimeout      = "timeout"
	closeReasonAuthExpired  = "auth_expired"
)

// Peer kinds of the from/to labels.
const (
	peerClient = "client"
	peerServer = "server"
)

// REST operations that matched no route (or no method of it) share these labels, so that
// arbitrary paths and methods never become label values.
const (
	restOpUnmatched        = "unmatched"
	restOpMethodNotAllowed = "method_not_allowed"
)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalrd_client_connections", Help: "Client connections currently open (handshake completed).",
		}, []string{"instance", "transport", "protocol"}),
		clientOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_client_opens_total", Help: "Client connections opened (handshake completed).",
		}, []string{"instance", "transport"}),
		clientCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_client_closes_total", Help: "Client connections closed, by reason.",
		}, []string{"instance", "reason"}),
		serverSockets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalrd_server_sockets", Help: "App-server sockets currently connected.",
		}, []string{"instance"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_messages_received_total", Help: "Service messages from app servers and hub messages from clients received.",
		}, []string{"instance", "from"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_bytes_received_total", Help: "Bytes received from app servers and clients.",
		}, []string{"instance", "from"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_messages_sent_total", Help: "Frames written to clients (hub messages or app-server payloads) and service messages written to app servers.",
		}, []string{"instance", "to"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_bytes_sent_total", Help: "Payload bytes written to clients and app servers (before transport framing).",
		}, []string{"instance", "to"}),
		restRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_rest_requests_total", Help: "REST API requests, by operation (method and route) and status class.",
		}, []string{"instance", "operation", "status"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_stateful_reconnects_total", Help: "Client WebSockets re-attached to a stateful connection.",
		}, []string{"instance"}),
	}
	m.migrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signalrd_client_migrations_total", Help: "Clients moved to another app server by a MigrateClients shutdown.",
	}, []string{"instance"})
	m.reg.MustRegister(m.migrations, m.reconnects, m.clients, m.clientOpens, m.clientCloses, m.serverSockets,
		m.messagesIn, m.bytesIn, m.messagesOut, m.bytesOut, m.restRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry exposes the server's metrics (served on the admin listener).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// instanceMetrics are one instance's hot-path counters, resolved once so that per-message
// accounting is an atomic add, without label lookups or allocations.
type instanceMetrics struct {
	toClient, toServer     flowCounter
	fromClient, fromServer flowCounter
}

// flowCounter counts messages and bytes in one direction.
type flowCounter struct {
	msgs, bytes prometheus.Counter
}

func (f flowCounter) add(msgs, bytes int) {
	f.msgs.Add(float64(msgs))
	f.bytes.Add(float64(bytes))
}

// addFrames counts a batch that was written.
func (f flowCounter) addFrames(frames [][]byte) {
	n := 0
	for _, fr := range frames {
		n += len(fr)
	}
	f.add(len(frames), n)
}

// counting wraps a transport writer so that every batch written successfully is counted.
func (f flowCounter) counting(w transport.BatchWriter) transport.BatchWriter {
	return &countingWriter{w: w, f: f}
}

type countingWriter struct {
	w transport.BatchWriter
	f flowCounter
}

func (c *countingWriter) WriteBatch(ctx context.Context, frames [][]byte) error {
	if err := c.w.WriteBatch(ctx, frames); err != nil {
		return err
	}
	c.f.addFrames(frames)
	return nil
}

// forInstance resolves the hot-path counters of one instance and, when it has upstream
// settings, exposes the upstream client's statistics.
func (m *metrics) forInstance(name string, up *upstream.Client) *instanceMetrics {
	flow := func(msgs, bytes *prometheus.CounterVec, peer string) flowCounter {
		return flowCounter{msgs: msgs.WithLabelValues(name, peer), bytes: bytes.WithLabelValues(name, peer)}
	}
	im := &instanceMetrics{
		toClient:   flow(m.messagesOut, m.bytesOut, peerClient),
		toServer:   flow(m.messagesOut, m.bytesOut, peerServer),
		fromClient: flow(m.messagesIn, m.bytesIn, peerClient),
		fromServer: flow(m.messagesIn, m.bytesIn, peerServer),
	}
	// Series of fixed label sets start at zero, so rate() and absence alerts work from the start.
	m.serverSockets.WithLabelValues(name)
	m.reconnects.WithLabelValues(name)
	m.migrations.WithLabelValues(name)
	for _, tr := range []string{transportNameWebSockets, transportNameSSE, transportNameLongPolling} {
		m.clientOpens.WithLabelValues(name, tr)
	}
	for _, r := range []string{closeReasonClient, closeReasonApp, closeReasonSlowConsumer, closeReasonTooLarge,
		closeReasonServerLost, closeReasonService, closeReasonHandshake, closeReasonTimeout, closeReasonAuthExpired} {
		m.clientCloses.WithLabelValues(name, r)
	}
	if up != nil {
		m.reg.MustRegister(upstreamCollector{instance: name, up: up})
	}
	return im
}

// clientOpened counts a connection whose handshake completed and returns the gauge to
// decrement when it ends. transportName and protocol come from fixed sets (the negotiate
// transport names, the codecs' protocol names).
func (m *metrics) clientOpened(instance, transportName, protocol string) prometheus.Gauge {
	g := m.clients.WithLabelValues(instance, transportName, protocol)
	g.Inc()
	m.clientOpens.WithLabelValues(instance, transportName).Inc()
	return g
}

var (
	upstreamCallsDesc = prometheus.NewDesc("signalrd_upstream_calls_total",
		"Upstream webhook HTTP requests attempted.", []string{"instance"}, nil)
	upstreamFailuresDesc = prometheus.NewDesc("signalrd_upstream_failures_total",
		"Upstream webhook requests that failed: network error, timeout, non-2xx or unusable response.", []string{"instance"}, nil)
	upstreamDroppedDesc = prometheus.NewDesc("signalrd_upstream_dropped_total",
		"Upstream events not sent: queue limit reached, or dispatched while stopping.", []string{"instance"}, nil)
	upstreamNoMatchDesc = prometheus.NewDesc("signalrd_upstream_unmatched_total",
		"Upstream events no template matched.", []string{"instance"}, nil)
)

// upstreamCollector reads an instance's upstream.Client statistics at scrape time.
type upstreamCollector struct {
	instance string
	up       *upstream.Client
}

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamCallsDesc
	ch <- upstreamFailuresDesc
	ch <- upstreamDroppedDesc
	ch <- upstreamNoMatchDesc
}

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.up.Stats()
	for _, v := range []struct {
		d *prometheus.Desc
		n uint64
	}{{upstreamCallsDesc, st.Calls}, {upstreamFailuresDesc, st.Failures}, {upstreamDroppedDesc, st.Dropped}, {upstreamNoMatchDesc, st.NoMatch}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), c.instance)
	}
}

// statusClass maps an HTTP status to a bounded label value.
func statusClass(code int) string {
	switch code / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return "other"
}

// statusRecorder remembers the status a handler wrote. Unwrap keeps http.ResponseController
// working through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// code is the status sent (200 when the handler wrote nothing).
func (r *statusRecorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// restOperation names a route's method for the operation label: "POST /hubs/{hub}/users/{user}"
// (the route table is fixed, so the set is bounded).
func restOperation(method string, segs []string) string {
	op := method + " /hubs/{hub}"
	for _, s := range segs {
		op += "/" + s
	}
	return op
}

// countREST counts one REST request.
func (m *metrics) countREST(instance, op string, code int) {
	m.restRequests.WithLabelValues(instance, op, statusClass(code)).Inc()
}
