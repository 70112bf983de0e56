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
//   - Each stanza read from an authenticated pair walks the stanza path
//     (pipeline.go): its from and to are prepared per RFC 7622 (a
//     malformed one is bounced with jid-malformed), its from must be a
//     domain authenticated on this stream and its to a domain on the far
//     side; the remote domain's stanza rate is applied; the policy
//     decides on the canonical addresses (and on the content and payload
//     facts when it reads them); the audit record is written; and the
//     stanza is handed to the [Router].
//   - The router keeps one outgoing stream per (leg, from-domain, to-domain).
//     An outgoing stream is negotiated in the initiating role: connect (SRV
//     for the outside, inside.server for the inside), STARTTLS or direct
//     TLS, then SASL EXTERNAL when offered, else dialback. Stanzas wait in a
//     bounded queue while it is set up; if it cannot be set up they are
//     bounced to their sender with the stanza error RFC 6120 names.
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
// Every session and stanza is decided by the [Policy] and recorded by the
// [Auditor]; without either the gateway does not start (fail closed).
// ARCHITECTURE.md at the top of the repository is the one-page map.
package edge
