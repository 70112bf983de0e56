package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "xmppedge"

// Histogram buckets, in seconds.
var (
	// Policy decisions: cached ones take a microsecond, OPA evaluations tens
	// of microseconds, anything near a millisecond is a problem.
	policyBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1}
	// DNS lookups: cache hits to resolver timeouts.
	dnsBuckets = []float64{1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// Audit appends and fsyncs: ~1 µs buffered, ~0.2 ms to several ms
	// synced.
	auditBuckets = []float64{1e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 1}
)

// Metrics holds xmppedge's metrics and the registry they are served from.
// Create it with New. It is safe for concurrent use, and every method is a
// no-op on a nil *Metrics.
type Metrics struct {
	reg *prometheus.Registry

	sessions        *lazyVec[prometheus.Gauge]   // leg, role, auth
	sessionAttempts *lazyVec[prometheus.Counter] // leg, direction
	sessionFailures *lazyVec[prometheus.Counter] // leg, direction, reason
	stanzas         *lazyVec[prometheus.Counter] // direction, kind, outcome, reason
	bytes           *lazyVec[prometheus.Counter] // leg, direction
	policySeconds   *lazyVec[prometheus.Observer]
	policyCacheHits *lazyVec[prometheus.Counter]
	policyFailures  *lazyVec[prometheus.Counter]
	dnsSeconds      *lazyVec[prometheus.Observer]
	dnsFailures     *lazyVec[prometheus.Counter]
	tlsHandshakes   *lazyVec[prometheus.Counter] // leg, result, version
	dialback        *lazyVec[prometheus.Counter] // role, result
	saslFallbacks   *lazyVec[prometheus.Counter] // leg, cause
	queued          *lazyVec[prometheus.Gauge]   // leg
	reloads         *lazyVec[prometheus.Counter] // result
	limitRefusals   *lazyVec[prometheus.Counter] // limit

	auditRecords       prometheus.Counter
	auditFailures      prometheus.Counter
	auditRecordSeconds prometheus.Histogram
	auditFsyncSeconds  prometheus.Histogram
	auditPublish       prometheus.Histogram
	auditRetention     prometheus.Counter
	reloadClosed       prometheus.Counter

	certExpiry *prometheus.GaugeVec
	partners   *partnerMetrics // partners.go

	policyMu   sync.Mutex
	policyInfo *prometheus.GaugeVec
	policyRev  string
	policySet  bool
}

// New creates the metrics and registers them, the Go runtime and process
// collectors and xmppedge_build_info{version} in a new registry.
func New(version string) *Metrics {
	if version == "" {
		version = "unknown"
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	r := registrar{reg: reg}
	m.registerStreamMetrics(r)
	m.registerLookupMetrics(r)
	m.registerSetupMetrics(r)
	m.registerOperationMetrics(r)
	m.registerPartnerMetrics(r)
	registerBuildInfo(reg, version)
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registrar creates metrics in the xmppedge namespace and registers them
// in reg.
type registrar struct {
	reg *prometheus.Registry
}

func (r registrar) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	r.reg.MustRegister(v)
	return v
}

func (r registrar) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	r.reg.MustRegister(v)
	return v
}

func (r registrar) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	r.reg.MustRegister(v)
	return v
}

func (r registrar) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	r.reg.MustRegister(c)
	return c
}

func (r registrar) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	r.reg.MustRegister(h)
	return h
}

// registerStreamMetrics registers what counts streams and the stanzas
// and bytes they carry.
func (m *Metrics) registerStreamMetrics(r registrar) {
	m.sessions = newLazyVec(r.gaugeVec("sessions",
		"Open s2s streams by leg (inside|outside), role (incoming|outgoing) and authentication method.",
		"leg", "role", "auth").WithLabelValues, legSet, roleSet, authSet)
	m.sessionAttempts = newLazyVec(r.counterVec("session_attempts_total",
		"s2s streams begun, by leg and direction (incoming|outgoing).",
		"leg", "direction").WithLabelValues, legSet, roleSet)
	m.sessionFailures = newLazyVec(r.counterVec("session_failures_total",
		"s2s streams that failed to establish or ended in error, by leg, direction and reason.",
		"leg", "direction", "reason").WithLabelValues, legSet, roleSet, failSet)
	m.stanzas = newLazyVec(r.counterVec("stanzas_total",
		"Stanzas by direction (inbound|outbound), kind, outcome (relayed|denied|bounced|undeliverable) and stanza error condition.",
		"direction", "kind", "outcome", "reason").WithLabelValues, stanzaDirs, kindSet, outcomeSet, reasonSet)
	m.bytes = newLazyVec(r.counterVec("bytes_total",
		"Bytes received from and sent to peers, by leg and direction (received|sent).",
		"leg", "direction").WithLabelValues, legSet, byteDirs)
}

// registerLookupMetrics registers the policy decisions' and the DNS
// lookups' latencies and failures.
func (m *Metrics) registerLookupMetrics(r registrar) {
	policySeconds := r.histogramVec("policy_decision_seconds",
		"Time to take a policy decision (cached or evaluated), by kind (session|stanza).", policyBuckets, "kind")
	m.policySeconds = newLazyVec(func(v ...string) prometheus.Observer { return policySeconds.WithLabelValues(v...) }, policyKinds)
	m.policyCacheHits = newLazyVec(r.counterVec("policy_decision_cache_hits_total",
		"Policy decisions answered from the decision cache, by kind.", "kind").WithLabelValues, policyKinds)
	m.policyFailures = newLazyVec(r.counterVec("policy_decision_failures_total",
		"Policy decisions that failed to evaluate (and so denied), by kind.", "kind").WithLabelValues, policyKinds)
	dnsSeconds := r.histogramVec("dns_lookup_seconds",
		"DNS lookup latency by query type (SRV|A|AAAA).", dnsBuckets, "qtype")
	m.dnsSeconds = newLazyVec(func(v ...string) prometheus.Observer { return dnsSeconds.WithLabelValues(v...) }, qtypeSet)
	m.dnsFailures = newLazyVec(r.counterVec("dns_lookup_failures_total",
		"DNS lookups that failed (timeout, SERVFAIL, REFUSED, ...; not NXDOMAIN), by query type.", "qtype").WithLabelValues, qtypeSet)
}

// registerSetupMetrics registers what counts the setting up of streams:
// TLS handshakes, dialback exchanges, and the stanzas waiting meanwhile.
func (m *Metrics) registerSetupMetrics(r registrar) {
	m.tlsHandshakes = newLazyVec(r.counterVec("tls_handshakes_total",
		"TLS handshakes by leg, result (success|failure) and negotiated version.",
		"leg", "result", "version").WithLabelValues, legSet, resultSet, tlsVersions)
	m.dialback = newLazyVec(r.counterVec("dialback_total",
		"Server Dialback exchanges by our role (originating|receiving|authoritative) and result (valid|invalid|error|timeout|valid_cert: receiving, answered valid without db:verify because the peer's certificate is valid for the originating domain or matches its DANE records, XEP-0344).",
		"role", "result").WithLabelValues, dbRoles, dbResults)
	m.saslFallbacks = newLazyVec(r.counterVec("sasl_external_fallbacks_total",
		"Outgoing streams that fell back to dialback because the peer refused our certificate, by leg and cause (sasl: a SASL EXTERNAL <failure/>, or the stream ended with no answer to it; tls: the TLS handshake refused our client certificate).",
		"leg", "cause").WithLabelValues, legSet, fallbacks)
	m.queued = newLazyVec(r.gaugeVec("queued_stanzas",
		"Stanzas waiting in the queues of outgoing streams being set up, by leg.", "leg").WithLabelValues, legSet)
}

// registerOperationMetrics registers reloads, limits, the audit log,
// certificate expiry and the policy revision.
func (m *Metrics) registerOperationMetrics(r registrar) {
	m.reloads = newLazyVec(r.counterVec("reloads_total",
		"Configuration reloads by result (success|failure).", "result").WithLabelValues, resultSet)
	m.limitRefusals = newLazyVec(r.counterVec("limit_refusals_total",
		"Connections and stanzas refused by a limit: connections_per_ip, new_connections_per_ip (outside listeners) or stanza_rate (per remote domain; the stanza is bounced with resource-constraint).",
		"limit").WithLabelValues, limitSet)
	m.auditRecords = r.counter("audit_records_total", "Audit records written.")
	m.auditFailures = r.counter("audit_write_failures_total", "Audit records that could not be written.")
	m.auditRecordSeconds = r.histogram("audit_record_seconds",
		"Time to append one audit record, including the wait for its group commit in sync durability.", auditBuckets)
	m.auditFsyncSeconds = r.histogram("audit_fsync_seconds", "Latency of the audit log's fsync calls.", auditBuckets)
	m.auditPublish = r.histogram("audit_stream_publish_seconds", "Time from publishing a batch of audit records to the replicated stream (audit.backend jetstream) to its acknowledgement by a quorum.", auditBuckets)
	m.auditRetention = r.counter("audit_retention_deleted_files_total",
		"Rotated audit files deleted by retention (audit.retention), each after an audit.anchor record.")
	m.reloadClosed = r.counter("reload_closed_sessions_total",
		"Sessions closed because a reloaded configuration or policy no longer allowed them.")
	m.certExpiry = r.gaugeVec("certificate_expiry_timestamp_seconds",
		"Not-after time of the certificate presented for each local domain, in seconds since the epoch.", "domain")
	m.policyInfo = r.gaugeVec("policy_info", "The policy revision in force (value 1).", "revision")
}

// registerBuildInfo registers xmppedge_build_info{version, goversion}.
func registerBuildInfo(reg *prometheus.Registry, version string) {
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "xmppedge's version and the Go version it was built with (value 1).",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(buildInfo)
}

// Registry is the registry the metrics are served from, for components that
// bring their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// SessionOpened counts an established stream in xmppedge_sessions.
func (m *Metrics) SessionOpened(leg, role, auth string) {
	if m == nil {
		return
	}
	m.session(leg, role, auth).Inc()
}

// SessionClosed undoes SessionOpened; pass the same labels.
func (m *Metrics) SessionClosed(leg, role, auth string) {
	if m == nil {
		return
	}
	m.session(leg, role, auth).Dec()
}

// session is the xmppedge_sessions gauge of leg, role and auth.
func (m *Metrics) session(leg, role, auth string) prometheus.Gauge {
	return m.sessions.at(m.sessions.idx3(legSet.index(leg), roleSet.index(role), authIndex(auth)))
}

// SessionAttempt counts a stream begun (accepted or dialled); direction is
// incoming or outgoing.
func (m *Metrics) SessionAttempt(leg, direction string) {
	if m == nil {
		return
	}
	m.sessionAttempts.at(m.sessionAttempts.idx2(legSet.index(leg), roleSet.index(direction))).Inc()
}

// SessionFailure counts a stream that failed to establish or ended in
// error. reason is one of the Fail* constants; anything else counts as
// "other".
func (m *Metrics) SessionFailure(leg, direction, reason string) {
	if m == nil {
		return
	}
	m.sessionFailures.at(m.sessionFailures.idx3(legSet.index(leg), roleSet.index(direction), failSet.index(reason))).Inc()
}

// Stanza counts one stanza: direction inbound|outbound, kind
// message|presence|iq, outcome relayed|denied|bounced|undeliverable and
// reason the stanza error condition ("" or "none" when relayed).
func (m *Metrics) Stanza(direction, kind, outcome, reason string) {
	if m == nil {
		return
	}
	m.stanzas.at(m.stanzas.idx4(stanzaDirs.index(direction), kindSet.index(kind), outcomeSet.index(outcome), reasonSet.index(reason))).Inc()
}

// LimitRefused counts a connection or a stanza refused by a limit
// (connections_per_ip|new_connections_per_ip|stanza_rate).
func (m *Metrics) LimitRefused(limit string) {
	if m == nil {
		return
	}
	m.limitRefusals.at(limitSet.index(limit)).Inc()
}

// Bytes counts n bytes received from or sent to a peer on a leg; direction
// is received|sent.
func (m *Metrics) Bytes(leg, direction string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.bytes.at(m.bytes.idx2(legSet.index(leg), byteDirs.index(direction))).Add(float64(n))
}

// PolicyDecision records one policy decision of kind session|stanza that
// took d, whether it came from the cache and whether it failed.
func (m *Metrics) PolicyDecision(kind string, d time.Duration, cached bool, failed bool) {
	if m == nil {
		return
	}
	k := policyKinds.index(kind)
	m.policySeconds.at(k).Observe(d.Seconds())
	if cached {
		m.policyCacheHits.at(k).Inc()
	}
	if failed {
		m.policyFailures.at(k).Inc()
	}
}

// DNSLookup records one DNS query of qtype (SRV|A|AAAA) that took d; err
// non-nil counts a failure. Pass nil for an answer that says the name does
// not exist: that is an answer, not a failure.
func (m *Metrics) DNSLookup(qtype string, d time.Duration, err error) {
	if m == nil {
		return
	}
	q := qtypeSet.index(qtype)
	m.dnsSeconds.at(q).Observe(d.Seconds())
	if err != nil {
		m.dnsFailures.at(q).Inc()
	}
}

// TLSHandshake counts a TLS handshake on a leg with result success|failure
// and the negotiated version ("TLS 1.3" as tls.VersionName gives it, or
// "1.3"; "" when the handshake failed before one was agreed).
func (m *Metrics) TLSHandshake(leg, result, version string) {
	if m == nil {
		return
	}
	m.tlsHandshakes.at(m.tlsHandshakes.idx3(legSet.index(leg), resultSet.index(result), tlsVersionIndex(version))).Inc()
}

// Dialback counts a dialback exchange in our role
// (originating|receiving|authoritative) with its result
// (valid|invalid|error|timeout).
func (m *Metrics) Dialback(role, result string) {
	if m == nil {
		return
	}
	m.dialback.at(m.dialback.idx2(dbRoles.index(role), dbResults.index(result))).Inc()
}

// SASLExternalFallback counts an outgoing stream on leg that falls back
// to dialback because the peer refused our certificate: cause
// FallbackSASL (its SASL EXTERNAL <failure/>, or the end of the stream
// with no answer to it) or FallbackTLS (the TLS handshake refused our
// client certificate).
func (m *Metrics) SASLExternalFallback(leg, cause string) {
	if m == nil {
		return
	}
	m.saslFallbacks.at(m.saslFallbacks.idx2(legSet.index(leg), fallbacks.index(cause))).Inc()
}

// AuditRecord records one audit append that took d; err non-nil counts a
// write failure instead of a record.
func (m *Metrics) AuditRecord(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.auditFailures.Inc()
		return
	}
	m.auditRecords.Inc()
	m.auditRecordSeconds.Observe(d.Seconds())
}

// AuditStreamPublish records how long the replicated audit stream took to
// acknowledge a batch.
func (m *Metrics) AuditStreamPublish(d time.Duration) {
	if m == nil {
		return
	}
	m.auditPublish.Observe(d.Seconds())
}

// AuditRetentionDeleted counts n audit files deleted by retention.
func (m *Metrics) AuditRetentionDeleted(n int) {
	if m == nil {
		return
	}
	m.auditRetention.Add(float64(n))
}

// AuditFsync records the latency of one fsync of the audit log.
func (m *Metrics) AuditFsync(d time.Duration) {
	if m == nil {
		return
	}
	m.auditFsyncSeconds.Observe(d.Seconds())
}

// QueueDepth adds delta (positive when a stanza is queued, negative when it
// leaves the queue) to the queued stanzas of a leg.
func (m *Metrics) QueueDepth(leg string, delta int) {
	if m == nil || delta == 0 {
		return
	}
	m.queued.at(legSet.index(leg)).Add(float64(delta))
}

// CertificateExpiry sets the not-after time of the certificate of a local
// domain; a zero t removes the domain's series (the domain is no longer
// configured). Pass only configured local domains: the label is unbounded
// otherwise.
func (m *Metrics) CertificateExpiry(domain string, t time.Time) {
	if m == nil {
		return
	}
	if t.IsZero() {
		m.certExpiry.DeleteLabelValues(domain)
		return
	}
	m.certExpiry.WithLabelValues(domain).Set(float64(t.Unix()))
}

// PolicyRevision sets xmppedge_policy_info{revision=rev} to 1 and removes the
// series of the previous revision.
func (m *Metrics) PolicyRevision(rev string) {
	if m == nil {
		return
	}
	m.policyMu.Lock()
	defer m.policyMu.Unlock()
	if m.policySet && m.policyRev != rev {
		m.policyInfo.DeleteLabelValues(m.policyRev)
	}
	m.policyInfo.WithLabelValues(rev).Set(1)
	m.policyRev, m.policySet = rev, true
}

// Reload counts a configuration reload; err non-nil counts a failure.
func (m *Metrics) Reload(err error) {
	if m == nil {
		return
	}
	result := ResultSuccess
	if err != nil {
		result = ResultFailure
	}
	m.reloads.at(resultSet.index(result)).Inc()
}

// ReloadClosedSessions counts n sessions closed because a reload no longer
// allowed them.
func (m *Metrics) ReloadClosedSessions(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.reloadClosed.Add(float64(n))
}

// ClusterSource is what the cluster metrics read at each scrape: the
// node's view of the JetStream quorum, and its replicated audit sink.
type ClusterSource struct {
	Healthy func() error // nil: JetStream answers and the node hears from a quorum
	// AuditStream reports the records this node appended to the audit
	// stream, those the stream acknowledged, and the batches that failed
	// and were retried; nil without the JetStream backend.
	AuditStream func() (appended, acknowledged, failedBatches uint64)
}

// WatchCluster registers the cluster's metrics, read from src at each
// scrape:
//
//	xmppedge_cluster_quorum                     gauge: 1 while JetStream has a quorum for this node
//	xmppedge_audit_stream_pending               gauge: records appended, not yet acknowledged by the stream
//	xmppedge_audit_stream_acknowledged_total    records the stream acknowledged
//	xmppedge_audit_stream_failed_batches_total  batches the stream did not acknowledge (retried)
func (m *Metrics) WatchCluster(src ClusterSource) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "cluster_quorum",
		Help: "1 while JetStream answers and this node hears from a quorum, else 0."}, func() float64 {
		if src.Healthy() != nil {
			return 0
		}
		return 1
	}))
	if src.AuditStream == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "audit_stream_pending",
		Help: "Audit records appended by this node and not yet acknowledged by the stream."}, func() float64 {
		appended, acked, _ := src.AuditStream()
		return float64(appended - min(acked, appended))
	}))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "audit_stream_acknowledged_total",
		Help: "Audit records of this node the stream acknowledged."}, func() float64 {
		_, acked, _ := src.AuditStream()
		return float64(acked)
	}))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "audit_stream_failed_batches_total",
		Help: "Batches of audit records the stream did not acknowledge (retried until it did)."}, func() float64 {
		_, _, failed := src.AuditStream()
		return float64(failed)
	}))
}
