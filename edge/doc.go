// Package edge is xmppedge's proxy core: the listeners of both legs, XML
// stream negotiation in both roles, sessions, the router that relays
// stanzas between the legs, and bounces.
//
// # Model
//
// xmppedge stands between a company's internal XMPP server (the inside leg)
// and the Internet (the outside leg). Every s2s stream is terminated here:
//
//   - An incoming stream (a peer connected to one of our listeners) is
//     negotiated in the receiving role: stream header, features, STARTTLS,
//     then authentication of each domain pair the peer claims, by SASL
//     EXTERNAL (certificate) or Server Dialback (XEP-0220). Dialback keys
//     are verified against the claimed domain's authoritative server: for
//     the inside leg that is the configured internal server, for the outside
//     leg the server that DNS (SRV) names for the domain.
//   - Each stanza read from an authenticated pair walks the stanza path, a
//     chain of handler stages whose order is written once
//     (chain.go): addressing (from and to prepared per RFC 7622, a
//     malformed one bounced with jid-malformed; the from domain must be
//     authenticated on this stream for the to domain) → limits (the
//     remote domain's stanza rate) → policy (on the canonical addresses,
//     and on the content and payload facts when it reads them) → rewrite
//     → audit → route (the [Router], or a bounce). Session decisions walk
//     a chain of the same kind (session_path.go).
//   - The router keeps one outgoing stream per (leg, from-domain, to-domain).
//     An outgoing stream is negotiated in the initiating role: connect (SRV
//     for the outside, inside.server for the inside), STARTTLS or direct
//     TLS, then SASL EXTERNAL when offered, else dialback. A server that
//     refuses our certificate (SASL EXTERNAL <failure/>, or a TLS handshake
//     refusing it as a client certificate: since 2026 public certificates
//     carry only the serverAuth usage) gets dialback instead, on the same
//     stream or a new connection, unless the policy requires certificate
//     authentication (dialer.go). Stanzas wait in a bounded queue while
//     it is set up; if it cannot be set up they are bounced to their
//     sender with the stanza error RFC 6120 names.
//   - Any listener answers <db:verify/> (the authoritative role) for keys
//     this deployment issued: keys are HMACs over a secret shared by every
//     node, so any node can answer for any other.
//
// Stanzas are relayed as the exact bytes the strict scanner in
// [github.com/xmppedge/xmppedge/internal/xmlstream] validated, with the
// canonical addresses written in where they differ from the ones sent; a
// stanza with CDATA or with children the policy strips is re-serialised
// canonically from the tree the policy judged. Either way what the receiver
// parses is what was checked.
//
// Every session and stanza is decided by the [Policy] and recorded through
// an audit.Sink (Options.Audit); without either the gateway does not start
// (fail closed). Sessions are kept in one generic registry per kind
// (registry.go); the router and its outgoing streams get the narrow
// dependencies they use (routerDeps), not the Gateway.
// ARCHITECTURE.md at the top of the repository is the one-page map.
package edge
