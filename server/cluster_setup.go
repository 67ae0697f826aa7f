package server

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/signalrd/signalrd/storage"
)

// openStorage returns the cluster's shared storage: the injected one, a new Redis connection,
// or nil for a node running alone.
func (s *Server) openStorage() (storage.Storage, error) {
	switch {
	case s.cfg.Storage != nil:
		return s.cfg.Storage, nil
	case s.cfg.Redis == "":
		return nil, nil
	}
	redis.SetLogger(storage.GoRedisLogger{Logger: s.log})
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout*2)
	defer cancel()
	r, err := storage.NewRedis(ctx, storage.RedisOptions{URL: s.cfg.Redis, Options: storage.Options{Prefix: s.cfg.RedisPrefix, Logger: s.log}})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.ownStore = r
	return r, nil
}

func (s *Server) closeStorage() {
	if s.ownStore != nil {
		_ = s.ownStore.Close()
		s.ownStore = nil
	}
}

// startClusters joins every instance to its cluster once the listener's address is known.
func (s *Server) startClusters(l net.Listener) error {
	adv := s.cfg.AdvertiseURL
	if adv == "" {
		scheme := "http"
		if s.certs != nil {
			scheme = "https"
		}
		adv = scheme + "://" + advertiseHost(l.Addr())
	}
	for _, in := range s.instances {
		if in.cl == nil {
			continue
		}
		in.cl.advertise.Store(adv)
		if err := in.cl.start(s.ctx, s.goConn); err != nil {
			return fmt.Errorf("server: instance %s: %w", in.name, err)
		}
		in.log.Info("joined the cluster", "node", in.cl.node, "advertise", adv)
	}
	return nil
}

// advertiseHost turns a listener address into one peers can dial: an unspecified IP
// (0.0.0.0, ::) becomes this host's name.
func advertiseHost(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := osHostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

var osHostname = os.Hostname
