package storage

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

type redisMode int

const (
	modeSingle redisMode = iota
	modeCluster
	modeSentinel
)

func (m redisMode) String() string {
	return [...]string{"standalone", "cluster", "sentinel"}[m]
}

// redisTarget is what an address string means: go-redis options for one of the three modes.
type redisTarget struct {
	mode     redisMode
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
	// asCluster reinterprets a single address as a Cluster seed (set when it is one).
	asCluster func() (*redis.ClusterOptions, error)
}

// splitURL cuts scheme://[userinfo@]host[,host...][/path][?query] apart by hand, because
// net/url rejects several comma-separated hosts.
func splitURL(raw string) (scheme, userinfo string, hosts []string, path, query string, err error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "redis", raw
	}
	scheme = strings.ToLower(scheme)
	authority := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, rest = rest[:i], rest[i:]
	} else {
		rest = ""
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	for h := range strings.SplitSeq(authority, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	path, query, _ = strings.Cut(rest, "?")
	if len(hosts) == 0 && scheme != "unix" {
		return "", "", nil, "", "", errors.New("no host")
	}
	return scheme, userinfo, hosts, path, query, nil
}

// withAddrs builds a go-redis URL on the first host with the others as addr= parameters.
func withAddrs(scheme, userinfo string, hosts []string, path, query string, extra url.Values) string {
	q, _ := url.ParseQuery(query) // malformed queries are reported by go-redis's own parse
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	s := scheme + "://" + userinfo + hosts[0] + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// parseRedisURL maps signalrd's address forms onto go-redis's parsers:
//
//	redis://[user:pass@]host:port[/db][?opt=...]   standalone (or a Cluster seed, detected on connect)
//	rediss://...                                     the same over TLS
//	host:port                                        redis://host:port
//	redis://h1:p1,h2:p2[?opt=...]                    Cluster (h1:p1,h2:p2 works too)
//	redis-sentinel://[user:pass@]s1:p1,s2:p2/master[/db][?opt=...]   Sentinel (rediss-sentinel: TLS)
//
// masterName, when set, makes the hosts Sentinel addresses whatever the scheme. The options
// after '?' are go-redis's (dial_timeout, pool_size, ...). In Sentinel mode the credentials
// in the URL authenticate to the sentinels and, unless password= is given, to the master.
func parseRedisURL(raw, masterName string) (*redisTarget, error) {
	raw = strings.TrimSpace(raw)
	scheme, userinfo, hosts, path, query, err := splitURL(raw)
	if err != nil {
		return nil, err
	}
	sentinel := masterName != ""
	switch scheme {
	case "redis-sentinel", "rediss-sentinel":
		sentinel = true
		scheme = strings.TrimSuffix(scheme, "-sentinel")
	case "redis", "rediss":
	case "unix":
		if sentinel {
			return nil, errors.New("sentinel over a unix socket is not supported")
		}
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return &redisTarget{mode: modeSingle, single: o}, nil
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, redis-sentinel or rediss-sentinel)", scheme)
	}

	if sentinel {
		segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
		if masterName == "" {
			if len(segs) == 0 {
				return nil, errors.New("sentinel address needs the master name: redis-sentinel://host:port/mastername")
			}
			masterName, segs = segs[0], segs[1:]
			if masterName, err = url.PathUnescape(masterName); err != nil {
				return nil, fmt.Errorf("master name: %w", err)
			}
		}
		if len(segs) > 1 {
			return nil, fmt.Errorf("invalid path %q: want /[master/]db", path)
		}
		dbPath := ""
		if len(segs) == 1 {
			dbPath = "/" + segs[0]
		}
		o, err := redis.ParseFailoverURL(withAddrs(scheme, userinfo, hosts, dbPath, query,
			url.Values{"master_name": {masterName}}))
		if err != nil {
			return nil, err
		}
		if o.Password == "" && o.Username == "" {
			o.Username, o.Password = o.SentinelUsername, o.SentinelPassword
		}
		return &redisTarget{mode: modeSentinel, failover: o}, nil
	}

	clusterURL := func() (*redis.ClusterOptions, error) {
		if p := strings.Trim(path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("invalid path %q: a Redis Cluster has only database 0", path)
		}
		return redis.ParseClusterURL(withAddrs(scheme, userinfo, hosts, "", query, nil))
	}
	if len(hosts) > 1 {
		o, err := clusterURL()
		if err != nil {
			return nil, err
		}
		return &redisTarget{mode: modeCluster, cluster: o}, nil
	}
	o, err := redis.ParseURL(withAddrs(scheme, userinfo, hosts, path, query, nil))
	if err != nil {
		return nil, err
	}
	return &redisTarget{mode: modeSingle, single: o, asCluster: clusterURL}, nil
}

// redactURL hides the password of an address for logs.
func redactURL(raw string) string {
	scheme, userinfo, hosts, path, query, err := splitURL(strings.TrimSpace(raw))
	if err != nil {
		return "(invalid)"
	}
	if userinfo != "" {
		user, _, _ := strings.Cut(strings.TrimSuffix(userinfo, "@"), ":")
		userinfo = user + ":xxxxx@"
	}
	if query != "" {
		q, perr := url.ParseQuery(query)
		if perr == nil {
			for _, k := range []string{"password", "sentinel_password"} {
				if q.Has(k) {
					q.Set(k, "xxxxx")
				}
			}
			query = q.Encode()
		}
		query = "?" + query
	}
	return scheme + "://" + userinfo + strings.Join(hosts, ",") + path + query
}
