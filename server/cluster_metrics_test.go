package server_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/signalrd/signalrd/server"
	"github.com/signalrd/signalrd/server/servertest"
	"github.com/signalrd/signalrd/storage"
)

// bpMetric reads one backplane metric of a node (instance "default") from its registry.
func bpMetric(t *testing.T, ts *servertest.Instance, name string) float64 {
	t.Helper()
	return metricValue(t, ts, name, map[string]string{"instance": "default"})
}

// TestClusterBackplaneMetrics: publishes, receives and losses of the backplane are exported,
// and a send while the backplane is unreachable is counted as lost (local delivery unaffected).
func TestClusterBackplaneMetrics(t *testing.T) {
	store := storage.NewMemory(storage.Options{})
	t.Cleanup(func() { _ = store.Close() })
	var cut atomic.Bool
	cfg := func(id string, st storage.Storage) server.Config {
		return server.Config{Storage: st, NodeID: id, Heartbeat: clHeartbeat, Defaults: server.Settings{Mode: server.ModeServerless}}
	}
	a := servertest.Start(t, cfg("node-a", cutStorage{Storage: store, cut: &cut}))
	b := servertest.Start(t, cfg("node-b", store))
	waitUntil(t, "both nodes see each other", func() bool {
		return bpMetric(t, a, "signalrd_cluster_nodes") == 2 && bpMetric(t, b, "signalrd_cluster_nodes") == 2
	})

	before := bpMetric(t, a, "signalrd_backplane_published_total")
	receivedB := bpMetric(t, b, "signalrd_backplane_received_total")
	expectStatus(t, clREST(t, a, http.MethodPost, "/:send?api-version=2022-06-01", `{"target":"t","arguments":[]}`), http.StatusAccepted, "REST broadcast")
	waitUntil(t, "the broadcast is published", func() bool { return bpMetric(t, a, "signalrd_backplane_published_total") > before })
	// Node b learns of a's requests and heartbeats-driven traffic through its node topic.
	expectStatus(t, clREST(t, a, http.MethodHead, "/users/nobody?api-version=2022-06-01", ""), http.StatusNotFound, "user exists (asks every node)")
	waitUntil(t, "node b receives a's question", func() bool { return bpMetric(t, b, "signalrd_backplane_received_total") > receivedB })

	lost := bpMetric(t, a, "signalrd_backplane_lost_total")
	cut.Store(true)
	expectStatus(t, clREST(t, a, http.MethodPost, "/:send?api-version=2022-06-01", `{"target":"t","arguments":[]}`), http.StatusAccepted, "REST broadcast while cut off")
	waitUntil(t, "the lost publish is counted", func() bool { return bpMetric(t, a, "signalrd_backplane_lost_total") > lost })
	cut.Store(false)
	if v := bpMetric(t, a, "signalrd_backplane_invalid_total"); v != 0 {
		t.Fatalf("invalid backplane messages: %v", v)
	}
}
