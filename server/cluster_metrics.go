package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalrd/signalrd/storage"
)

// Backplane metrics, read at scrape time from the cluster's and the storage's counters.
var (
	bpPublishedDesc = prometheus.NewDesc("signalrd_backplane_published_total",
		"Envelopes published to the backplane (fan-out sends, node requests, relayed client traffic).", []string{"instance"}, nil)
	bpLostDesc = prometheus.NewDesc("signalrd_backplane_lost_total",
		"Envelopes other nodes never got: the publish failed (backplane unreachable) or the publish queue was full.", []string{"instance"}, nil)
	bpReceivedDesc = prometheus.NewDesc("signalrd_backplane_received_total",
		"Envelopes received from the backplane (this node's own fan-out included, then skipped).", []string{"instance"}, nil)
	bpInvalidDesc = prometheus.NewDesc("signalrd_backplane_invalid_total",
		"Backplane messages that could not be decoded and were dropped.", []string{"instance"}, nil)
	bpForwardedDesc = prometheus.NewDesc("signalrd_backplane_forwarded_requests_total",
		"HTTP requests reverse-proxied to the node owning their connection.", []string{"instance"}, nil)
	bpTopicsDesc = prometheus.NewDesc("signalrd_backplane_subscriptions",
		"Hub, user and group topics this node is subscribed to (it has a local member).", []string{"instance"}, nil)
	bpNodesDesc = prometheus.NewDesc("signalrd_cluster_nodes",
		"Live nodes of the cluster as this node last read them, itself included.", []string{"instance"}, nil)

	stDroppedDesc = prometheus.NewDesc("signalrd_storage_received_dropped_total",
		"Backplane messages received but dropped because local delivery was too far behind.", nil, nil)
	stPublishErrDesc = prometheus.NewDesc("signalrd_storage_publish_errors_total",
		"Backplane publishes the storage backend refused or could not reach.", nil, nil)
	stReceiveErrDesc = prometheus.NewDesc("signalrd_storage_receive_errors_total",
		"Failures of backplane subscription connections (disconnects, dead health checks).", nil, nil)
	stResubDesc = prometheus.NewDesc("signalrd_storage_resubscribes_total",
		"Backplane subscription connections re-established with their topics after a failure.", nil, nil)
)

// clusterCollector exports one instance's backplane counters.
type clusterCollector struct{ cl *cluster }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{bpPublishedDesc, bpLostDesc, bpReceivedDesc, bpInvalidDesc, bpForwardedDesc, bpTopicsDesc, bpNodesDesc} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	name := c.cl.in.name
	st := &c.cl.stats
	for _, v := range []struct {
		d *prometheus.Desc
		n uint64
	}{{bpPublishedDesc, st.published.Load()}, {bpLostDesc, st.lost.Load()}, {bpReceivedDesc, st.received.Load()},
		{bpInvalidDesc, st.bad.Load()}, {bpForwardedDesc, st.forwarded.Load()}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), name)
	}
	ch <- prometheus.MustNewConstMetric(bpTopicsDesc, prometheus.GaugeValue, float64(len(c.cl.interest.subscribed())), name)
	ch <- prometheus.MustNewConstMetric(bpNodesDesc, prometheus.GaugeValue, float64(len(c.cl.liveNodes())), name)
}

// statsSource is a storage that counts its traffic (Memory and Redis do).
type statsSource interface{ Stats() storage.Stats }

// storageCollector exports the shared storage's own counters (node-wide, not per instance).
type storageCollector struct{ s statsSource }

func (c storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stDroppedDesc, stPublishErrDesc, stReceiveErrDesc, stResubDesc} {
		ch <- d
	}
}

func (c storageCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, v := range []struct {
		d *prometheus.Desc
		n uint64
	}{{stDroppedDesc, st.Dropped}, {stPublishErrDesc, st.PublishErrors}, {stReceiveErrDesc, st.ReceiveErrors}, {stResubDesc, st.Resubscribes}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
	}
}
