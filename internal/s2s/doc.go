// Package s2s is the server-to-server protocol layer (RFC 6120, XEP-0220,
// XEP-0178) usable without the relay: stream negotiation in both roles as
// a loop over [Feature] values.
//
// A Feature says when it is offered and how it is listed in
// <stream:features/> (receiving role), which elements it answers and how
// ([Feature.Handle]), and what the initiating side does given the features
// the peer offered ([Feature.Initiate]): skip, restart the stream, or
// authenticated. The features and their order are written in one place,
// [Registered]: STARTTLS, SASL EXTERNAL, Dialback.
//
// Whatever the relay decides — which domains are ours, the TLS
// configurations, the verdict on a peer certificate, the policy and audit
// of a domain pair, dialback key verification against the authoritative
// server, node-wide verification slots, metrics — comes in through the
// small interfaces that [Receiver] and [Initiator] are made of. This
// package imports neither policy nor metrics nor audit.
//
// # Adding a feature
//
// A new feature (e.g. XEP-0288 bidi) is one file with a type implementing
// Feature (and, when it needs the relay's decisions, a small interface
// embedded in Receiver or Initiator), plus its line in Registered.
package s2s
