// Package admin is xmppedge's administration API: list the sessions and
// the partners' state, close a session, reload the configuration. It is served on the operations listener
// next to /metrics and the health endpoints (see internal/metrics), and only
// when the configuration enables it (metrics.admin) together with a way to
// authenticate.
//
// # Model
//
// The API knows nothing about the gateway's types: it talks to a Source,
// which the caller implements on top of the gateway (or with Funcs, an
// adapter from plain functions), so this package never imports edge and
// cannot create an import cycle with it.
//
//	GET  /admin/sessions             200, the Source's sessions as JSON
//	GET  /admin/partners             200, per remote domain: its sessions and postures seen
//	                                 (a PartnerSource, as Funcs with Partners; else 501)
//	POST /admin/sessions/{id}/close  200 "closed", or 404 when no session has the id
//	POST /reload                     200 "reloaded", or 500 with the errors, one per line;
//	                                 the old configuration keeps running
//
// Only these endpoints are guarded: /metrics, /healthz and /readyz, on the
// same listener, stay open.
//
// # Authentication
//
// Every request must authenticate (Auth), in one of two ways; with both
// configured, either admits a request:
//
//   - a bearer token (metrics.admin_token_file, read with LoadToken: a
//     file of mode 0600 or stricter holding one token of at least 16
//     characters): "Authorization: Bearer TOKEN". The token is compared in
//     constant time (as SHA-256 digests, so its length does not leak
//     either), is never logged or audited, and can be replaced at reload
//     (Auth.SetToken). Without it, or with another token, the answer is 401
//     with "WWW-Authenticate: Bearer realm=…" (error="invalid_token" when a
//     token was sent). There is one token: the actor of its requests is
//     "bearer token", and the audit record's remote_addr says where it
//     came from.
//   - a client certificate verified against metrics.client_ca: the listener
//     then serves HTTPS (ServerTLSConfig, with metrics.tls_cert_file and
//     metrics.tls_key_file). A client certificate is asked for but not
//     required by the handshake, so Prometheus scrapes /metrics without
//     one; a certificate that does not verify fails the handshake. The
//     actor is "client certificate " + the certificate's subject DN. Without
//     a certificate (and no token configured) the answer is 403.
//
// The state-changing endpoints are POST only and refuse cross-origin
// browser requests (http.CrossOriginProtection), so a web page open on an
// operator's machine cannot drive them with the browser's client
// certificate.
//
// # Audit
//
// With an audit sink (Options.Audit) every action and every refused attempt is recorded
// (event "admin", see internal/audit): actor, action (sessions.list, partners.list,
// session.close, reload), target (the session id), remote_addr, decision
// (allow: done; deny: refused, not authenticated; error: failed, e.g. no
// such session or a reload rejected) and reason. The API fails closed: a
// listing is answered only once its record is stored; close and reload
// are refused with 503 while the audit log cannot store records, and their
// answer says so if the record of a completed action could not be written.
// Refused attempts are recorded without waiting for the disk, at most 60
// a minute: beyond, they are counted and the count is written with the
// next refusal recorded, so that whoever reaches the listener cannot fill
// the audit disk (a full disk stops the relay: the log fails closed).
package admin
