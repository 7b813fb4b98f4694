// Package affinity derives the sticky keys that send a client's requests
// to the same credential while the mapping is fresh: the key of a client
// IP (found behind trusted proxies), a session header or a client key,
// hashed. The mappings themselves belong to the quota limiter, which
// reads and writes them in the same step as the quota (in one Redis round
// trip with the Redis backend).
package affinity

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
)

// Key derives the stored key for a sticky value of some kind ("ip",
// "header", "client"). The value is hashed: client keys are secrets and
// IP addresses are personal data, and neither belongs in a store that
// operators browse.
func Key(kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return kind + ":" + hex.EncodeToString(sum[:12])
}

// ClientIP returns the address of the client behind a chain of trusted
// proxies. remote is the peer address of the connection ("ip:port" or
// "ip"), forwardedFor the X-Forwarded-For header values in order. Hops are
// taken from the right while they are trusted proxies; the first untrusted
// hop is the client. With no trusted proxies the peer address is the
// client, whatever the headers say.
func ClientIP(remote string, forwardedFor []string, trusted []netip.Prefix) string {
	addr, ok := parseAddr(remote)
	if !ok {
		return remote
	}
	if !isTrusted(addr, trusted) {
		return addr.String()
	}
	var hops []string
	for _, v := range forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseAddr(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		addr = hop
		if !isTrusted(hop, trusted) {
			break
		}
	}
	return addr.String()
}

func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap(), err == nil
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
