# The session decision: may this remote domain federate with us, in this
# direction, over this TLS, with this authentication?
#
# Input: direction, local_domain, remote_domain, remote_ip,
# tls {version, cipher, peer_cert_valid, peer_cert_issuer, peer_cert_error},
# auth ("sasl_external" | "dialback" | "" before authentication).
# Result: {"allow": bool, "reason": string, "require": ["certificate"]?,
#          "rate": {"per_second": number, "burst": integer}?}.
package xmppedge.session

import data.xmppedge.common

# Default deny: a session is allowed only when a partner entry allows it
# and no rule below objects.
default decision := {"allow": false, "reason": "no rule allowed this session"}

decision := {"allow": false, "reason": concat("; ", sort(deny)), "require": require} if count(deny) > 0

decision := object.union(
	{"allow": true, "reason": sprintf("%s is a federation partner (%s)", [input.remote_domain, input.direction]), "require": require},
	rate,
) if {
	count(deny) == 0
	common.is_partner(input.remote_domain, input.direction)
}

# The partner's stanza rate (rate: {per_second, burst}, or the top-level
# rate): the gateway limits the remote domain's stanzas with a token
# bucket. No rate, no limit.
rate := {"rate": r} if {
	r := common.rate(common.allowing_entries(input.remote_domain, input.direction))
} else := {}

tls_versions := {"TLS 1.2", "TLS 1.3"}

# Requirements the gateway must enforce on a session it lets through.
require := ["certificate"] if common.require_cert(input.remote_domain, input.direction)

else := []

deny contains sprintf("%s is not a federation partner for %s sessions", [input.remote_domain, input.direction]) if {
	not common.is_partner(input.remote_domain, input.direction)
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
	common.require_cert(input.remote_domain, input.direction)
	input.auth != ""
	input.auth != "sasl_external"
}
