package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are registered on a registry the server owns (never the global one). Label sets are
// bounded: instance names come from the configuration, reasons and kinds from constants here.
type metrics struct {
	reg           *prometheus.Registry
	clients       *prometheus.GaugeVec   // instance, protocol
	clientCloses  *prometheus.CounterVec // instance, reason
	serverSockets *prometheus.GaugeVec   // instance
	messagesIn    *prometheus.CounterVec // instance, from (client|server)
	bytesIn       *prometheus.CounterVec // instance, from
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

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalrd_client_connections", Help: "Client connections currently open.",
		}, []string{"instance", "protocol"}),
		clientCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_client_closes_total", Help: "Client connections closed, by reason.",
		}, []string{"instance", "reason"}),
		serverSockets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalrd_server_sockets", Help: "App-server sockets currently connected.",
		}, []string{"instance"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_messages_received_total", Help: "Service messages from app servers and client data batches received.",
		}, []string{"instance", "from"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_bytes_received_total", Help: "Bytes received from app servers and clients.",
		}, []string{"instance", "from"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalrd_stateful_reconnects_total", Help: "Client WebSockets re-attached to a stateful connection.",
		}, []string{"instance"}),
	}
	m.migrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signalrd_client_migrations_total", Help: "Clients moved to another app server by a MigrateClients shutdown.",
	}, []string{"instance"})
	m.reg.MustRegister(m.migrations, m.reconnects, m.clients, m.clientCloses, m.serverSockets, m.messagesIn, m.bytesIn,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry exposes the server's metrics (served on the admin listener).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }
