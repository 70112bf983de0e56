// Package dnsresponder is xmppedge's internal DNS responder
// (inside.dns_listen): a small DNS server that makes the company's internal
// XMPP server send every server-to-server connection to xmppedge's inside
// listener, by its resolver setting alone. Prosody, ejabberd, Openfire and
// Tigase all find s2s peers through SRV records, so pointing their resolver
// here is enough; no routing module is needed.
//
// # Model
//
// The responder pretends to be authoritative for every remote domain and
// answers (AA bit set, question copied, TTL Config.TTL):
//
//   - SRV _xmpp-server._tcp.DOMAIN, for every DOMAIN that is not local:
//     one record "0 0 PORT TARGET." where TARGET is Config.TargetName
//     (default "xmppedge-inside.") and PORT the inside listener's port, with
//     TARGET's A/AAAA records (the inside listener's addresses) in the
//     additional section;
//   - SRV _xmpps-server._tcp.DOMAIN (direct TLS, XEP-0368), not local: an
//     empty NOERROR answer (NODATA) with an SOA for negative caching. The
//     inside leg speaks STARTTLS or plain s2s, never direct TLS, so the
//     internal server must fall through to _xmpp-server._tcp (Prosody 0.12
//     asks _xmpps-server first);
//   - A and AAAA for TARGET: the inside listener's addresses (NODATA for a
//     family it has none of);
//   - other record types at those names: NODATA.
//
// Everything else, including every name of a local domain (which the
// internal server serves itself; a local domain is matched exactly, not its
// subdomains) and any other name (a domain's own A record, MX, TXT, ...),
// is forwarded to Config.Forward when upstream resolvers are configured
// (over the transport the query came on; upstreams tried in order; SERVFAIL
// when all fail), else answered REFUSED.
//
// Names are compared case-insensitively in A-label (IDNA) form; answers keep
// the owner name exactly as asked. UDP answers are truncated (TC bit) to the
// client's EDNS buffer size, or 512 bytes, so the client retries over TCP,
// which the responder serves on the same port.
//
// The inside listener must be announced as one (target, port): all
// Config.InsideAddrs share one port, and none may be an unspecified address
// (0.0.0.0 or ::): the internal server must be told where to connect.
//
// # Exposure
//
// The responder is never an open resolver: it answers only queries whose
// source address is in Config.Allow (inside.dns_allow, by default
// inside.allow), which is required. A query from any other source is
// answered REFUSED (question copied, no records, not authoritative), over
// UDP and TCP alike, before anything else is looked at: nothing is
// forwarded for it and nothing about the inside listener is revealed. The
// refusals are counted (Server.Refused; xmppedge exports the count as
// xmppedge_dns_responder_refused_total) and the first is logged as a
// warning, the others at debug level.
//
// REFUSED rather than silence: an operator who got the allowlist wrong sees
// an immediate, explicit answer in dig or in the internal server's log
// instead of a timeout, and the answer is no larger than the query, so a
// spoofed source gains no amplification from it. Bind the responder on the
// inside all the same (loopback or the inside network).
package dnsresponder
