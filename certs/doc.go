// Package certs holds the certificates xmppedge presents for its local
// domains and decides whether a peer's certificate is valid for the XMPP
// domain it claims.
//
// # Model
//
// There are two separate questions, answered by two separate types.
//
// Store answers "which certificate do we present?". LoadStore loads it
// from certificate and key files, read-only afterwards. NewACMEStore adds,
// for every local domain no file covers, a certificate obtained and
// renewed with ACME through certmagic (its own Cache and Config; the
// package-level certmagic defaults are neither used nor changed). The
// certmagic storage folder holds certificates, keys, the ACME account and
// locks, and is the cluster boundary: nodes sharing it share certificates
// and renew once. Every handshake looks the certificate up afresh
// (GetCertificate / GetClientCertificate), so a renewal is served to the
// next connection while established ones keep theirs. HTTP-01 is answered
// by an HTTP server the Store runs; TLS-ALPN-01 by the direct-TLS
// listener through ServerConfig(…, true) (which then offers ALPNACMETLS).
// Expiry and ExpiringSoon feed a metric and a warning (ExpiryWarning).
// One Store may serve any number of connections concurrently. The
// certificate for an accepted connection is chosen by the TLS server name
// (SNI) when the peer sends one we hold, else by the `to` domain of the
// stream (Prosody sends no SNI on s2s STARTTLS).
//
// InternalCA is the inside leg's authority: xmppedge stands in for every
// remote domain towards the internal server, so it mints short-lived
// (24h) certificates for those domains on demand, in memory, reused until
// two thirds of their life; the internal server trusts only this CA for
// them and can require certificate authentication. Their identities are a
// DNS-ID and an SRV-ID, no XmppAddr (ejabberd cannot verify a certificate
// with a domain XmppAddr).
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
// carries an identity for the domain (MatchIdentity); Verdict.Method is
// then "pkix".
//
// Two more proofs can authenticate a peer whose PKIX verdict fails, or
// overrule it. VerifyDANE (RFC 7673) looks up TLSA _PORT._tcp.HOST with
// the DO bit and trusts the records only when the validating resolver
// sets AD; DANE-EE matches the leaf, DANE-TA a CA of the presented chain.
// Authenticated, usable records that match nothing are a failure, not a
// fallback to PKIX. VerifyPOSH (RFC 7711) fetches the domain's
// /.well-known/posh/xmpp-server.json over authenticated HTTPS and accepts
// the leaf whose key fingerprint the domain publishes (for domains
// hosted by a provider), caching the file for its "expires". The caller
// combines the results; policy decides what is enough.
//
// # TLS posture
//
// Every TLS config the package builds — ServerConfig and ClientConfig of
// a Store, of an InternalCA, and the HTTPS client that fetches POSH files
// — goes through Harden: TLS 1.2 or later, TLS 1.2 cipher suites limited
// to Mozilla's "intermediate" list (ECDHE with ECDSA or RSA, AES-GCM or
// ChaCha20-Poly1305: TLS12CipherSuites) and the key exchange groups
// X25519MLKEM768, X25519, P-256 and P-384 (CurvePreferences). A config
// built outside this package (a test client, the probe command) calls
// Harden itself. The TLS-ALPN-01 challenge handshakes are answered
// through ServerConfig; only the short-lived listener certmagic binds
// itself when the direct-TLS listener is not running yet (at start) uses
// certmagic's own config, and it serves nothing but the challenge
// certificate.
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
