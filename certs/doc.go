// Package certs holds the certificates xmppedge presents for its local
// domains and decides whether a peer's certificate is valid for the XMPP
// domain it claims.
//
// # Model
//
// There are two separate questions, answered by two separate types.
//
// Store answers "which certificate do we present?". It is loaded once from
// certificate and key files and is read-only afterwards, so one Store may
// serve any number of connections concurrently; reloading means building a
// new Store and swapping it in. The certificate for an accepted connection
// is chosen by the TLS server name (SNI) when the peer sends one we hold,
// else by the `to` domain of the stream (Prosody sends no SNI on s2s
// STARTTLS).
//
// Verifier answers "is the peer who it claims to be?". crypto/tls is never
// allowed to decide this: our TLS configurations request, but do not
// verify, certificates (ServerConfig uses tls.RequestClientCert,
// ClientConfig uses InsecureSkipVerify). A certificate that does not
// validate must not break the TLS handshake, because XMPP can still
// authenticate the peer with Server Dialback over that TLS channel; the
// caller takes the Verdict, records it, and lets policy decide whether
// SASL EXTERNAL, dialback, or nothing is acceptable.
//
// A Verdict is valid when the chain is PKIX-valid at the given time
// against the configured roots (system roots and/or extra CA files) for
// either server or client authentication (an initiating server presents
// its server certificate as a TLS client certificate, and many public
// server certificates carry only the serverAuth usage), and the leaf
// carries an identity for the domain (MatchIdentity).
//
// # Identities
//
// MatchIdentity follows RFC 6125 / RFC 9525 for XMPP server identities:
// DNS-IDs (dNSName), SRV-IDs (_xmpp-server.DOMAIN) and XmppAddrs (a bare
// domain JID). The subject common name is never used. Names are compared
// in A-label form, case-insensitively, without a trailing dot. A wildcard
// is honoured only as the whole left-most label of a DNS-ID and matches
// exactly one label.
package certs
