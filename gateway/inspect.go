package gateway

import (
	"context"
	"sort"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/quota"
)

// CredentialInfo describes a configured credential, without its secret.
type CredentialInfo struct {
	ID        string      `json:"id"`
	Channel   string      `json:"channel"`
	Type      string      `json:"type"`
	Enabled   bool        `json:"enabled"`
	Limit     quota.Limit `json:"limit"`
	Pool      string      `json:"pool,omitempty"`       // the channel's shared limit, if any
	PoolLimit quota.Limit `json:"pool_limit,omitempty"` // zero without one
}

// Credentials lists the credentials of a provisioned config with their
// effective limits: each credential's own over its channel's, field by
// field.
func Credentials(cfg *config.Config) []CredentialInfo {
	var out []CredentialInfo
	for _, ch := range cfg.Channels {
		for _, cr := range ch.Credentials {
			info := CredentialInfo{
				ID: cr.ID, Channel: ch.Name, Type: ch.Type, Enabled: ch.IsEnabled() && cr.IsEnabled(),
				Limit: quotaLimit(credentialLimits(ch, cr)),
			}
			if shared := channelLimit(ch); !shared.IsZero() {
				info.Pool, info.PoolLimit = poolName(ch.Name), shared
			}
			out = append(out, info)
		}
	}
	return out
}

// poolName is the quota pool of a channel's shared limits.
func poolName(channel string) string { return "channel:" + channel }

// Report is the live state of a cluster's quotas, breakers and sticky
// mappings, for operators (sluice quota).
type Report struct {
	Time        time.Time          `json:"time"`
	Instances   []quota.Member     `json:"instances"`
	Credentials []CredentialReport `json:"credentials"`
	Pools       []SubjectReport    `json:"pools"`
	Clients     []SubjectReport    `json:"clients"`
	Groups      []SubjectReport    `json:"groups,omitempty"`
}

// CredentialReport is one credential's live state.
type CredentialReport struct {
	CredentialInfo
	Usage   quota.Usage `json:"usage"`
	Breaker string      `json:"breaker"` // closed, open or half-open
	Sticky  int         `json:"sticky"`  // sticky mappings pointing at it
}

// SubjectReport is a pool's or a client's live state.
type SubjectReport struct {
	Name  string      `json:"name"`
	Limit quota.Limit `json:"limit"`
	Usage quota.Usage `json:"usage"`
}

// Inspector reads live state for a Report. Every field is optional.
type Inspector struct {
	Usage interface {
		Usage(ctx context.Context, subjects []quota.Subject, limits []quota.Limit) ([]quota.Usage, error)
	}
	// Breakers returns the breakers open in the cluster: ID → until.
	Breakers func(ctx context.Context) (map[string]time.Time, error)
	// Sticky counts sticky mappings per credential.
	Sticky func(ctx context.Context) (map[string]int, error)
	// Instances lists the live instances.
	Instances func(ctx context.Context) ([]quota.Member, error)
}

// Report reads the live state of every credential, pool and client of a
// config.
func (in Inspector) Report(ctx context.Context, cfg *config.Config) (Report, error) {
	r := Report{Time: time.Now()}
	creds := Credentials(cfg)
	var subjects []quota.Subject
	var limits []quota.Limit
	pools := map[string]quota.Limit{}
	for _, c := range creds {
		subjects = append(subjects, quota.Subject{Kind: quota.KindCredential, ID: c.ID})
		limits = append(limits, c.Limit)
		if c.Pool != "" {
			pools[c.Pool] = c.PoolLimit
		}
	}
	poolNames := make([]string, 0, len(pools))
	for name := range pools {
		poolNames = append(poolNames, name)
	}
	sort.Strings(poolNames)
	for _, name := range poolNames {
		subjects = append(subjects, quota.Subject{Kind: quota.KindPool, ID: name})
		limits = append(limits, pools[name])
	}
	for _, cl := range cfg.Clients {
		subjects = append(subjects, quota.Subject{Kind: quota.KindClient, ID: cl.Name})
		limits = append(limits, clientLimit(cl))
	}
	for _, g := range cfg.Groups {
		subjects = append(subjects, quota.Subject{Kind: quota.KindGroup, ID: g.Name})
		limits = append(limits, groupLimit(g))
	}
	var usage []quota.Usage
	if in.Usage != nil {
		var err error
		if usage, err = in.Usage.Usage(ctx, subjects, limits); err != nil {
			return r, err
		}
	} else {
		usage = make([]quota.Usage, len(subjects))
	}
	open := map[string]time.Time{}
	if in.Breakers != nil {
		var err error
		if open, err = in.Breakers(ctx); err != nil {
			return r, err
		}
	}
	sticky := map[string]int{}
	if in.Sticky != nil {
		var err error
		if sticky, err = in.Sticky(ctx); err != nil {
			return r, err
		}
	}
	if in.Instances != nil {
		var err error
		if r.Instances, err = in.Instances(ctx); err != nil {
			return r, err
		}
	}
	for i, c := range creds {
		state := "closed"
		if until, ok := open[c.ID]; ok {
			state = "open"
			if !r.Time.Before(until) {
				state = "half-open"
			}
		}
		r.Credentials = append(r.Credentials, CredentialReport{CredentialInfo: c, Usage: usage[i], Breaker: state, Sticky: sticky[c.ID]})
	}
	for i, name := range poolNames {
		r.Pools = append(r.Pools, SubjectReport{Name: name, Limit: pools[name], Usage: usage[len(creds)+i]})
	}
	at := len(creds) + len(poolNames)
	for i, cl := range cfg.Clients {
		r.Clients = append(r.Clients, SubjectReport{Name: cl.Name, Limit: limits[at+i], Usage: usage[at+i]})
	}
	at += len(cfg.Clients)
	for i, g := range cfg.Groups {
		r.Groups = append(r.Groups, SubjectReport{Name: g.Name, Limit: limits[at+i], Usage: usage[at+i]})
	}
	return r, nil
}
