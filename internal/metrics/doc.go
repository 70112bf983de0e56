// Package metrics exposes what xmppedge does as Prometheus metrics, and
// serves them together with the health endpoints (/healthz, /readyz) on the
// operations listener (metrics.listen).
//
// # Model
//
// A Metrics owns its own prometheus.Registry (never the process-wide default
// registry): two gateways in one process, or two tests, never share series.
// New registers every xmppedge_ metric, the Go runtime and process
// collectors and the build information; Handler serves the registry in the
// Prometheus text format and Mux adds the health endpoints.
//
// The gateway reports events through methods (SessionOpened, Stanza,
// Bytes, PolicyDecision, ...). They are called on the hot path, so:
//
//   - every label value is normalised to a small fixed set (the exported
//     constants below); anything else becomes "other". No JID, remote domain
//     or free-form text ever becomes a label value, so the number of series
//     is bounded whatever peers send. The one exception is the certificate
//     expiry gauge, labelled by local domain: the caller passes only the
//     configured local domains;
//   - the label children of the bounded metrics are resolved once, on first
//     use, and cached in an array indexed by the label values' positions;
//     after that a call is a few comparisons and an atomic add, without
//     allocation. A series appears on /metrics when it is first used;
//   - every method is a no-op on a nil *Metrics, so code paths that run
//     without metrics need no checks.
//
// # The metrics
//
//	xmppedge_sessions{leg,role,auth}                      gauge: open streams
//	xmppedge_session_attempts_total{leg,direction}        streams begun
//	xmppedge_session_failures_total{leg,direction,reason} streams that failed to establish or ended in error
//	xmppedge_stanzas_total{direction,kind,outcome,reason} stanzas by what happened to them
//	xmppedge_bytes_total{leg,direction}                   bytes received from / sent to peers
//	xmppedge_policy_decision_seconds{kind}                histogram: policy decision latency
//	xmppedge_policy_decision_cache_hits_total{kind}       decisions answered from the cache
//	xmppedge_policy_decision_failures_total{kind}         decisions that failed (evaluation error)
//	xmppedge_policy_info{revision}                        1 for the policy revision in force
//	xmppedge_dns_lookup_seconds{qtype}                    histogram: DNS lookup latency
//	xmppedge_dns_lookup_failures_total{qtype}             DNS lookups that failed
//	xmppedge_tls_handshakes_total{leg,result,version}     TLS handshakes
//	xmppedge_dialback_total{role,result}                  dialback exchanges by our role (originating | receiving | authoritative) and result (valid | invalid | error | timeout | valid_cert: receiving, answered without db:verify, the certificate being valid for the originating domain or matching its DANE records, XEP-0344)
//	xmppedge_sasl_external_fallbacks_total{leg,cause}     outgoing streams that fell back to dialback: the peer refused our certificate (cause sasl | tls)
//	xmppedge_audit_records_total                          audit records written
//	xmppedge_audit_write_failures_total                   audit records that could not be written
//	xmppedge_audit_record_seconds                         histogram: time to append one record (incl. group commit)
//	xmppedge_audit_fsync_seconds                          histogram: fsync latency of the audit log
//	xmppedge_queued_stanzas{leg}                          gauge: stanzas waiting for an outgoing stream
//	xmppedge_certificate_expiry_timestamp_seconds{domain} gauge: not-after of each local domain's certificate
//	xmppedge_partner_agreement_expiry_timestamp_seconds{partner} gauge: when a partner's agreement expires (partners.go)
//	xmppedge_posture_downgrades_total{partner}         sessions weaker than the partner's best posture seen
//	xmppedge_partner_posture_best{partner,dimension}   gauge: the best posture seen (tls, auth, dane ranks)
//	xmppedge_reloads_total{result}                        configuration reloads
//	xmppedge_reload_closed_sessions_total                 sessions closed because a reload no longer allowed them
//	xmppedge_build_info{version,goversion}                1
//	xmppedge_cluster_quorum                               gauge: 1 while JetStream has a quorum for this node (cluster only)
//	xmppedge_audit_stream_pending                         gauge: audit records appended, not yet acknowledged (audit.backend jetstream)
//	xmppedge_audit_stream_publish_seconds                 histogram: publish to quorum acknowledgement of a batch (audit.backend jetstream)
//	xmppedge_audit_stream_acknowledged_total              audit records the stream acknowledged
//	xmppedge_audit_stream_failed_batches_total            batches of audit records the stream did not acknowledge (retried)
//
// plus go_* and process_* from client_golang's collectors.
//
// # Label vocabularies
//
// leg: inside | outside. role: incoming (the peer connected to us) |
// outgoing (we connected). auth: sasl_external | dialback | mixed (pairs
// authenticated both ways on one stream) | none. Session attempt and
// failure direction: incoming | outgoing (as role). Stanza direction:
// inbound (Internet → company) | outbound (company → Internet). Byte
// direction: received | sent. Stanza kind: message | presence | iq.
// Everything else: see the constants.
//
// # Health
//
// /healthz answers 200 "ok" while the process serves HTTP. /readyz asks the
// ready function given to Mux for problems (listeners down, no policy, audit
// not writable, certificates missing): none is 200 "ready", otherwise 503
// with one problem per line.
package metrics
