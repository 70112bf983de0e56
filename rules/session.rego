# The session decision: may this remote domain federate with us, in this
# direction, over this TLS, with this authentication?
#
# Input: direction, local_domain, remote_domain, remote_ip,
# tls {version, cipher, peer_cert_valid, peer_cert_issuer, peer_cert_error},
# auth ("sasl_external" | "dialback" | "" before authentication),
# now (RFC 3339, UTC, to the minute; agreements expire against it).
# Result: {"allow": bool, "reason": string, "require": ["certificate", "posture"]?,
#          "rate": {"per_second": number, "burst": integer}?}.
package xmppedge.session

import data.xmppedge.common

# Default deny: a session is allowed only when a partner entry allows it
# and no rule below objects.
default decision := {"allow": false, "reason": "no rule allowed this session"}

# The partner entries that allow this session's domain and direction,
# looked up once per decision (every rule below reads them): given by the
# gateway (common.remote_given), else looked up by domain.
entries := common.entries_allowing(remote_entries, input.direction)

remote_entries := input.remote.partner if common.remote_given

remote_entries := common.partner_entries(input.remote_domain) if not common.remote_given

decision := {"allow": false, "reason": concat("; ", sort(deny)), "require": require} if count(deny) > 0

decision := object.union(
	{"allow": true, "reason": sprintf("a federation partner (%s)", [input.direction]), "require": require},
	rate,
) if {
	count(deny) == 0
	count(entries) > 0
}

# The partner's stanza rate (rate: {per_second, burst}, or the top-level
# rate): the gateway limits the remote domain's stanzas with a token
# bucket. No rate, no limit.
rate := {"rate": r} if {
	r := common.rate(entries)
}

rate := {} if not common.rate(entries) # two rules, not an else: see common.remote_given

tls_versions := {"TLS 1.2", "TLS 1.3"}

# Requirements the gateway must enforce on a session it lets through:
# "certificate" (a valid certificate), "posture" (ask again once the
# outbound stream is authenticated: require_posture is judged then).
require := sort(requirements)

requirements contains "certificate" if common.entries_require_cert(entries)

requirements contains "certificate" if {
	common.entries_require_posture(entries).auth in {"certificate", "sasl_external"}
}

requirements contains "posture" if common.entries_require_posture(entries)

deny contains sprintf("%s is not a federation partner for %s sessions", [input.remote_domain, input.direction]) if {
	count(entries) == 0
}

# Inbound sessions arrive with their TLS facts. Outbound sessions are asked
# before xmppedge connects (tls is empty then); xmppedge itself never
# speaks less than TLS 1.2 on the outside leg.
deny contains sprintf("TLS 1.2 or newer is required (this session: %s)", [tls_shown]) if {
	input.direction == "inbound"
	not input.tls.version in tls_versions
}

tls_shown := input.tls.version if input.tls.version != ""

else := "no TLS"

# require_cert partners: dialback alone is not enough. Outbound sessions are
# asked before authentication (auth ""); the gateway then enforces require.
deny contains sprintf("%s must authenticate with a certificate (SASL EXTERNAL), not %s", [input.remote_domain, input.auth]) if {
	common.entries_require_cert(entries)
	input.auth != ""
	input.auth != "sasl_external"
}

# Partner agreements (agreement: {owner, reference, expires}): no session
# once the agreement has expired. (The agreements are found before
# input.now is read, and by iteration rather than in a comprehension, so
# that the gateway's decision cache, which narrows its keys by partial
# evaluation, need not key a partner without an agreement on the time.)
deny contains sprintf("the partner agreement %s (owner %s) for %s expired at %s: renew it and update its expires in the policy data", [a.reference, a.owner, input.remote_domain, a.expires]) if {
	some e in entries
	a := e.agreement
	input.now != ""
	common.agreement_over(a, input.now)
}

deny contains sprintf("the time of this decision is not known, and %s is a partner under agreement %s: refused (fail closed)", [input.remote_domain, a.reference]) if {
	some e in entries
	a := e.agreement
	input.now == ""
}

# require_posture: {tls: "1.2"|"1.3", auth: dialback|certificate|sasl_external}.
# The session's posture: its TLS version, and its authentication ranked
# dialback < dialback with a valid certificate ("certificate") <
# SASL EXTERNAL. Judged once authenticated (outbound: after connecting,
# the gateway asks again, require "posture").
posture_tls_rank := {"TLS 1.2": 2, "TLS 1.3": 3}

required_tls_rank := {"1.2": 2, "1.3": 3}

posture_auth_rank := {"dialback": 1, "certificate": 2, "sasl_external": 3}

seen_auth := "sasl_external" if input.auth == "sasl_external"

else := "certificate" if input.tls.peer_cert_valid == true

else := input.auth

seen_posture := sprintf("%s, %s", [tls_shown, seen_auth])

posture_short(rp) if {
	rp.tls
	object.get(posture_tls_rank, input.tls.version, 0) < required_tls_rank[rp.tls]
}

posture_short(rp) if {
	rp.auth
	object.get(posture_auth_rank, seen_auth, 0) < posture_auth_rank[rp.auth]
}

deny contains sprintf("%s requires posture TLS %s, %s authentication (require_posture); this session: %s", [input.remote_domain, object.get(rp, "tls", "1.2"), object.get(rp, "auth", "dialback"), seen_posture]) if {
	rp := common.entries_require_posture(entries)
	input.auth != ""
	posture_short(rp)
}
