// Package resolve finds where to connect for XMPP server-to-server traffic:
// the SRV records of RFC 6120 §3.2 and XEP-0368, and the A/AAAA addresses of
// the hosts they name, asked of configured DNS servers with
// github.com/miekg/dns.
//
// # The model
//
// LookupS2S(domain) asks for _xmpps-server._tcp.DOMAIN (direct TLS,
// XEP-0368) and _xmpp-server._tcp.DOMAIN (STARTTLS) at the same time and
// returns one ordered list of Targets: every direct-TLS target first, then
// every STARTTLS target, each group in RFC 2782 order (ascending priority,
// weighted random choice among equal priorities). When neither name has SRV
// records it falls back to the domain itself on port 5269. A lone SRV record
// whose target is "." means the service is decidedly not offered; when no
// service is left the lookup fails with ErrNoService. A DNS failure (timeout,
// SERVFAIL, REFUSED) is an error, never a reason to fall back: falling back
// could send traffic somewhere the domain's owner did not choose.
//
// LookupHost(host) returns the host's A then AAAA addresses; an IP literal is
// its own answer.
//
// Each query goes over UDP to the first server, retries over TCP when the
// answer is truncated, and moves on to the next server when one fails. Names
// are lowercased and converted to A-labels (IDNA) before they are asked.
//
// Answers are cached per (name, type) for their TTL (the smallest TTL of the
// answer's records); answers with TTL 0 are not cached. Negative answers
// (NXDOMAIN, or no record of the type) are cached for the SOA minimum when
// the server sends an SOA, and not at all otherwise. Failures are never
// cached. The cache holds at most Config.MaxCacheEntries entries; when full
// it drops expired entries, then arbitrary ones. A Resolver is safe for
// concurrent use.
package resolve
