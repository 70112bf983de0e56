package xmppedge.session_test

import data.xmppedge.session

partners := [
	{"domain": "partner.test", "direction": "both", "require_cert": false},
	{"domain": "*.partner.test", "direction": "both"},
	{"domain": "secure.test", "direction": "both", "require_cert": true},
	{"domain": "news.test", "direction": "inbound"},
]

good := {
	"direction": "inbound",
	"local_domain": "company.test",
	"remote_domain": "partner.test",
	"remote_ip": "192.0.2.1",
	"tls": {"version": "TLS 1.3", "cipher": "TLS_AES_128_GCM_SHA256", "peer_cert_valid": true, "peer_cert_issuer": "CN=CA", "peer_cert_error": ""},
	"auth": "dialback",
}

decide(x) := d if {
	d := session.decision with input as x with data.xmppedge.partners as partners
}

test_partner_allowed if {
	d := decide(good)
	d.allow == true
	d.require == []
}

test_unlisted_denied if {
	d := decide(object.union(good, {"remote_domain": "evil.test"}))
	d.allow == false
	contains(d.reason, "evil.test is not a federation partner")
}

test_wildcard_partner if decide(object.union(good, {"remote_domain": "chat.partner.test"})).allow

test_wildcard_whole_labels if not decide(object.union(good, {"remote_domain": "badpartner.test"})).allow

test_direction_inbound_only if {
	decide(object.union(good, {"remote_domain": "news.test"})).allow
	not decide(object.union(good, {"remote_domain": "news.test", "direction": "outbound"})).allow
}

test_require_cert_dialback_denied if {
	d := decide(object.union(good, {"remote_domain": "secure.test", "auth": "dialback"}))
	d.allow == false
	contains(d.reason, "certificate")
}

test_require_cert_sasl_external_allowed if {
	d := decide(object.union(good, {"remote_domain": "secure.test", "auth": "sasl_external"}))
	d.allow == true
	d.require == ["certificate"]
}

test_require_cert_outbound_before_auth if {
	d := decide(object.union(good, {"remote_domain": "secure.test", "direction": "outbound", "auth": ""}))
	d.allow == true
	d.require == ["certificate"]
}

test_tls_required if {
	d := decide(object.union(good, {"tls": {"version": ""}}))
	d.allow == false
	contains(d.reason, "no TLS")
}

test_old_tls_denied if {
	not decide(object.union(good, {"tls": {"version": "TLS 1.0"}})).allow
	not decide(object.union(good, {"tls": {"version": "TLS 1.1"}})).allow
	decide(object.union(good, {"tls": {"version": "TLS 1.2"}})).allow
}

# Outbound sessions are decided before xmppedge connects: no TLS facts yet,
# and that is not a reason to refuse (xmppedge enforces TLS itself).
test_outbound_before_connect if {
	d := decide({"direction": "outbound", "local_domain": "company.test", "remote_domain": "partner.test", "remote_ip": "", "tls": {"version": ""}, "auth": ""})
	d.allow == true
	not decide({"direction": "outbound", "local_domain": "company.test", "remote_domain": "stranger.test", "remote_ip": "", "tls": {"version": ""}, "auth": ""}).allow
}

test_default_deny_without_partners if {
	not session.decision.allow with input as good with data.xmppedge.partners as []
}

rated := [
	{"domain": "partner.test"},
	{"domain": "news.test", "direction": "inbound", "rate": {"per_second": 10, "burst": 20}},
]

# (rate null: no top-level rate, whatever the data file loaded says)
test_no_rate_by_default if {
	d := session.decision with input as good with data.xmppedge.partners as rated with data.xmppedge.rate as null
	d.allow == true
	not d.rate
}

test_partner_rate if {
	d := session.decision with input as object.union(good, {"remote_domain": "news.test"}) with data.xmppedge.partners as rated
	d.allow == true
	d.rate == {"per_second": 10, "burst": 20}
}

test_top_level_rate_is_the_default if {
	d := session.decision with input as good with data.xmppedge.partners as rated
		with data.xmppedge.rate as {"per_second": 50, "burst": 100}
	d.rate == {"per_second": 50, "burst": 100}
	n := session.decision with input as object.union(good, {"remote_domain": "news.test"}) with data.xmppedge.partners as rated
		with data.xmppedge.rate as {"per_second": 50, "burst": 100}
	n.rate == {"per_second": 10, "burst": 20}
}

test_denied_session_has_no_rate if {
	d := session.decision with input as object.union(good, {"remote_domain": "news.test", "direction": "outbound"}) with data.xmppedge.partners as rated
	d.allow == false
	not d.rate
}

# Agreements: refused from expires on (input.now), with the agreement named.
agreed := [
	{"domain": "partner.test", "agreement": {"owner": "legal@company.test", "reference": "NDA-17", "expires": "2027-03-31T00:00:00Z"}},
	{"domain": "free.test"},
]

decide_agreed(x) := d if {
	d := session.decision with input as x with data.xmppedge.partners as agreed
}

test_agreement_before_expiry_allowed if {
	decide_agreed(object.union(good, {"now": "2027-03-30T23:59:00Z"})).allow
}

test_agreement_expired_refused_with_reason if {
	d := decide_agreed(object.union(good, {"now": "2027-03-31T00:00:00Z"}))
	d.allow == false
	contains(d.reason, "agreement NDA-17 (owner legal@company.test)")
	contains(d.reason, "expired at 2027-03-31T00:00:00Z")
}

# An agreement that runs past 2262 (where nanoseconds since 1970 leave an
# int64) is judged like any other, not failed closed.
test_agreement_far_future_allowed if {
	d := session.decision with input as object.union(good, {"now": "2027-03-30T23:59:00Z"})
		with data.xmppedge.partners as [{"domain": "partner.test", "agreement": {"owner": "o", "reference": "R", "expires": "2999-01-01T00:00:00Z"}}]
	d.allow
}

test_agreement_expired_outbound_before_connect if {
	d := decide_agreed({"direction": "outbound", "local_domain": "company.test", "remote_domain": "partner.test", "remote_ip": "", "tls": {"version": ""}, "auth": "", "now": "2028-01-01T00:00:00Z"})
	d.allow == false
	contains(d.reason, "NDA-17")
}

test_agreement_unknown_time_fails_closed if {
	d := decide_agreed(object.union(good, {"now": ""}))
	d.allow == false
	contains(d.reason, "time of this decision is not known")
	decide_agreed(object.union(good, {"remote_domain": "free.test", "now": ""})).allow
}

# require_posture: the session's TLS and authentication against the required.
postured := [
	{"domain": "partner.test", "require_posture": {"tls": "1.3", "auth": "certificate"}},
	{"domain": "strict.test", "require_posture": {"auth": "sasl_external"}},
]

decide_postured(x) := d if {
	d := session.decision with input as x with data.xmppedge.partners as postured
}

test_require_posture_met if {
	d := decide_postured(good) # TLS 1.3, dialback with a valid certificate
	d.allow == true
	d.require == ["certificate", "posture"]
}

test_require_posture_tls_too_old if {
	d := decide_postured(object.union(good, {"tls": {"version": "TLS 1.2", "peer_cert_valid": true}}))
	d.allow == false
	contains(d.reason, "requires posture TLS 1.3, certificate authentication (require_posture); this session: TLS 1.2, certificate")
}

test_require_posture_dialback_without_cert if {
	d := decide_postured(object.union(good, {"tls": {"version": "TLS 1.3", "peer_cert_valid": false}}))
	d.allow == false
	contains(d.reason, "this session: TLS 1.3, dialback")
}

test_require_posture_sasl_external_only if {
	not decide_postured(object.union(good, {"remote_domain": "strict.test"})).allow
	decide_postured(object.union(good, {"remote_domain": "strict.test", "auth": "sasl_external"})).allow
}

test_require_posture_outbound_before_auth if {
	d := decide_postured({"direction": "outbound", "local_domain": "company.test", "remote_domain": "partner.test", "remote_ip": "", "tls": {"version": ""}, "auth": ""})
	d.allow == true
	d.require == ["certificate", "posture"]
}

# input.remote, as the gateway gives it, is what the rules read of the
# remote domain's partner entries: not the lookup of the domain.
remote_of(entries) := {"partner": entries, "muc_service": false, "audit_full": false}

test_gateway_facts_used if {
	d := decide(object.union(good, {"remote_domain": "stranger.test", "remote": remote_of([{"direction": "both"}])}))
	d.allow == true
	d.reason == "a federation partner (inbound)"
}

test_gateway_facts_no_entries if {
	d := decide(object.union(good, {"remote": remote_of([])}))
	d.allow == false
	contains(d.reason, "partner.test is not a federation partner")
}

test_gateway_facts_settings if {
	d := decide(object.union(good, {"remote": remote_of([{"direction": "both", "require_cert": true}])}))
	d.require == ["certificate"]
	d.allow == false # dialback
}
