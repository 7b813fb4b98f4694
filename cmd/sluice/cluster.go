package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/quota"
)

// newRedisClient connects to the Redis of a config: a single server
// (url, or one address), a Cluster (several addresses) or Sentinel
// (master_name). Every call is bounded by the timeout, and failed calls
// are not retried: the fallback policy takes over instead.
func newRedisClient(rc *config.Redis) (redis.UniversalClient, error) {
	o := &redis.UniversalOptions{
		Addrs: rc.Addrs, MasterName: rc.MasterName,
		Username: rc.Username, Password: rc.Password, DB: rc.DB,
		DialTimeout: rc.Timeout.D(), ReadTimeout: rc.Timeout.D(), WriteTimeout: rc.Timeout.D(),
		PoolTimeout: rc.Timeout.D(), ContextTimeoutEnabled: true, MaxRetries: -1,
		PoolSize: rc.PoolSize,
	}
	if o.PoolSize == 0 {
		o.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	if rc.URL != "" {
		u, err := redis.ParseURL(rc.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		o.Addrs = []string{u.Addr}
		o.Username, o.Password, o.DB = or(rc.Username, u.Username), or(rc.Password, u.Password), u.DB
		if rc.DB != 0 {
			o.DB = rc.DB
		}
		o.TLSConfig = u.TLSConfig
	}
	if rc.TLS != nil {
		t, err := tlsConfig(rc.TLS)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = t
	}
	return redis.NewUniversalClient(o), nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func tlsConfig(t *config.TLS) (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: no certificate in %s", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// redisLog routes go-redis's own messages (a dial failing, a pool
// closing) to debug level: an outage is reported once, by the fallback
// policy, not once per connection attempt.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// cluster is an instance's shared state: the backends a gateway uses and
// the background loops that keep them up to date.
type cluster struct {
	client   redis.UniversalClient
	limiter  *quota.Resilient
	breakers *breaker.Set
	members  *quota.Members
	loops    []func(context.Context)
}

// newCluster builds the Redis-backed state of a config with a redis
// section. Redis need not be reachable now: the fallback policy decides
// until it is.
func newCluster(cfg *config.Config, log *slog.Logger, self quota.Member, configVersion func() string) (*cluster, error) {
	rc := cfg.Redis
	redis.SetLogger(redisLog{log})
	client, err := newRedisClient(rc)
	if err != nil {
		return nil, err
	}
	// A span per Redis round trip, and the client's pool metrics.
	if err := redisotel.InstrumentTracing(client); err != nil {
		return nil, fmt.Errorf("redis tracing: %w", err)
	}
	if err := redisotel.InstrumentMetrics(client); err != nil {
		return nil, fmt.Errorf("redis metrics: %w", err)
	}
	members := quota.NewMembers(client, self, quota.MembersConfig{Prefix: rc.KeyPrefix, Logger: log, Config: configVersion})
	shared := quota.NewRedis(client, quota.RedisConfig{
		Prefix: rc.KeyPrefix, HashTag: rc.HashTag, LeaseTTL: rc.LeaseTTL.D(), Timeout: rc.Timeout.D(),
	})
	var primary quota.Limiter = shared
	loops := []func(context.Context){shared.Run}
	if rc.Lease.Enabled {
		leased := quota.NewLeased(shared, quota.LeaseConfig{Batch: rc.Lease.Batch, Hold: rc.Lease.Hold.D(), MaxDeny: rc.Lease.MaxDeny.D()})
		primary, loops = leased, append(loops, leased.Run)
	}
	limiter := quota.NewResilient(primary, quota.ResilientConfig{
		Policy:    quota.Policy(rc.OnUnavailable),
		Instances: members.Count,
		Probe:     shared.Probe,
		MinDwell:  rc.MinDwell.D(),
		Local:     gateway.NewMemoryLimiter(cfg),
		Logger:    log,
	})
	bc := gateway.BreakerConfig(cfg.Breaker, log)
	bc.Sharer = breaker.NewRedis(client, breaker.RedisConfig{Prefix: rc.KeyPrefix, Logger: log})
	bc.Instance = self.ID
	breakers := breaker.New(bc)

	return &cluster{
		client: client, limiter: limiter, breakers: breakers, members: members,
		loops: append(loops, limiter.Run, breakers.Run, members.Run),
	}, nil
}

// run starts the background loops; the returned function stops them and
// waits until they have flushed what they hold.
func (c *cluster) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, loop := range c.loops {
		wg.Go(func() { loop(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
		_ = c.client.Close()
	}
}
