# Helpers shared by the session and stanza decisions: partner lookup,
# direction, and who the local user of a stanza is. Data (loaded from
# partners.yaml and any other data file) lives under data.xmppedge.
package xmppedge.common

# Data with defaults, so that a data file may leave any of it out.
default partners := []

partners := data.xmppedge.partners

default confidential_keywords := []

confidential_keywords := data.xmppedge.confidential.keywords

default confidential_patterns := []

confidential_patterns := data.xmppedge.confidential.patterns

# XEP-0258 markings that keep a stanza inside (compared upper-case).
default confidential_markings := ["CONFIDENTIAL", "SECRET"]

confidential_markings := data.xmppedge.confidential.markings

default blocked_users := []

blocked_users := data.xmppedge.blocked_users

default groups := {}

groups := data.xmppedge.groups

default muc_services := []

muc_services := data.xmppedge.muc.services

default muc_allowed_rooms := []

muc_allowed_rooms := data.xmppedge.muc.allowed_rooms

default audit_full := []

audit_full := data.xmppedge.audit_full

# Files: links (XEP-0066 out-of-band URLs, as XEP-0363 HTTP upload sends
# them) are allowed only to the upload services listed in upload_hosts.
default upload_hosts := []

upload_hosts := data.xmppedge.upload_hosts

# Presence children stripped for every partner (a partner's own
# strip_presence adds to these).
default strip_presence := []

strip_presence := data.xmppedge.strip_presence

# external_users_configured is true when data restricts who may talk
# outside (external_users present, even empty).
default external_users_configured := false

external_users_configured if data.xmppedge.external_users

# The partner entries for a domain: the entries of the most specific
# matching pattern (exact domain, then the longest "*.suffix", then "*").
# Wildcards match one or more whole labels: "*.example.org" matches
# chat.example.org and a.chat.example.org, not example.org, never
# badexample.org. Domains are compared lower-case in A-label form.
partner_entries(domain) := xmppedge.partners_for(domain, partners)

# direction_allowed(entry, direction): the entry allows that direction.
# A missing direction means both.
direction_allowed(entry, _) if not entry.direction

direction_allowed(entry, _) if entry.direction == "both"

direction_allowed(entry, direction) if entry.direction == direction

# The entries for domain that allow direction.
allowing_entries(domain, direction) := entries_allowing(partner_entries(domain), direction)

# The entries of a list that allow direction.
entries_allowing(entries, direction) := [e |
	some e in entries
	direction_allowed(e, direction)
]

# What the data says of a decision's remote domain: the gateway looks it
# up itself and passes it as input.remote: {"partner": its partner_entries
# without their domain patterns, "muc_service": it is in muc_services,
# "audit_full": it is in audit_full}. Read from there, a decision need not
# read the remote domain at all, and the gateway's decision cache then
# serves every partner domain alike with one decision. Without
# input.remote (opa test, an input written by hand) the rules look the
# domain up themselves. (Each such choice is two rules with opposite
# conditions, not an else: the cache's partial evaluation sees through
# those.)
default remote_given := false

remote_given if input.remote

# The same for the stanza's local user (the sender outbound, the
# recipient inbound): input.local is {"user": the JID has a local part,
# "may_talk_outside": user_may_talk_outside of it}.
default local_given := false

local_given if input.local

is_partner(domain, direction) if count(allowing_entries(domain, direction)) > 0

# The functions below come in two forms: of a domain and direction, and of
# the entries (allowing_entries) a decision looked up once — a decision
# that asks several of them passes its entries (as session.rego does), so
# that the partner list is searched once per decision.

# require_cert(domain, direction): a matching entry asks for certificate
# authentication (dialback alone is not enough).
require_cert(domain, direction) if entries_require_cert(allowing_entries(domain, direction))

entries_require_cert(entries) if {
	some e in entries
	e.require_cert == true
}

# expired_agreements(domain, direction, now): the agreements of the
# entries allowing domain in direction whose expires (RFC 3339, written so
# by the engine when it loads the data) is not after now (input.now, RFC
# 3339). An empty now (the time is not known) counts every agreement as
# expired: fail closed.
expired_agreements(domain, direction, now) := entries_expired_agreements(allowing_entries(domain, direction), now)

entries_expired_agreements(entries, now) := [a |
	some e in entries
	a := e.agreement
	agreement_over(a, now)
]

agreement_over(_, "")

# The engine writes now and every expires in one form, RFC 3339 in UTC
# with a four-digit year (2027-03-31T00:00:00Z), so they compare as
# strings; time.parse_rfc3339_ns would fail (closed) on an expiry after
# 2262, where nanoseconds since 1970 leave an int64.
agreement_over(a, now) if {
	now != ""
	now >= a.expires
}

# require_posture(domain, direction): the posture a matching entry
# requires ({tls: "1.2"|"1.3", auth: "dialback"|"certificate"|
# "sasl_external"}), the first in data order.
require_posture(domain, direction) := entries_require_posture(allowing_entries(domain, direction))

entries_require_posture(entries) := vals[0] if {
	vals := [e.require_posture | some e in entries; e.require_posture]
	count(vals) > 0
}

# Partner settings. A setting is the partner's own value — from its
# entries (allowing_entries(domain, direction): the entries of the most
# specific pattern that allow the direction), the first entry that sets it
# in data order —, else the same key at the top level of the data (the
# default of every partner), else the built-in default. The functions take
# the entries, so that a decision looks its partner up once. (The engine
# checks the settings' types when it loads the data.)
partner_value(entries, key) := vals[0] if {
	vals := [e[key] | some e in entries]
	count(vals) > 0
}

# End-to-end encryption (allow_e2ee). Built-in default: refused when the
# data lists confidential keywords or patterns (the gateway cannot check
# what it cannot read), allowed otherwise.
default default_allow_e2ee := true

default_allow_e2ee := false if count(confidential_keywords) + count(confidential_patterns) > 0

allow_e2ee(entries) := v if {
	v := partner_value(entries, "allow_e2ee")
} else := v if {
	v := data.xmppedge.allow_e2ee
	v != null # unset (data files cannot hold null here; tests use it)
} else := default_allow_e2ee

# File transfer methods (allow_files): "oob" (links), "jingle", "ibb",
# "socks5". Built-in default: links and Jingle; in-band (IBB) and SOCKS5
# bytestreams only when listed.
default_allow_files := ["oob", "jingle"]

allow_files(entries) := v if {
	v := partner_value(entries, "allow_files")
} else := v if {
	v := data.xmppedge.allow_files
	v != null # unset
} else := default_allow_files

# upload_host_allowed(host, entries): a file link to host may go to the
# partner: host is in the top-level upload_hosts or in the partner's
# (every entry's list counts). Patterns as for partner domains
# ("*.example.org", "*").
upload_host_allowed(host, _) if xmppedge.domain_in(host, upload_hosts)

upload_host_allowed(host, entries) if {
	some e in entries
	xmppedge.domain_in(host, e.upload_hosts)
}

# Stripping <status/> from presence (strip_presence_status). Built-in
# default: off.
strip_presence_status(entries) := v if {
	v := partner_value(entries, "strip_presence_status")
} else := v if {
	v := data.xmppedge.strip_presence_status
	v != null # unset
} else := false

# Session rate (rate: {per_second, burst}); undefined: no limit.
rate(entries) := v if {
	v := partner_value(entries, "rate")
} else := v if {
	v := data.xmppedge.rate
	v != null # unset
}

# user_rules_configured is true when data restricts any local user
# (blocked_users not empty, or external_users present). Without it every
# user may talk outside, and a decision need not read who the local user
# is (the gateway's decision cache then keys no stanza on its local user).
default user_rules_configured := false

user_rules_configured if count(blocked_users) > 0

user_rules_configured if external_users_configured

# A local user may talk outside unless blocked, and, when external_users is
# configured, only if listed there by bare JID or through a group
# ("group:NAME" in external_users, NAME a key of groups).
user_may_talk_outside(jid) if {
	not user_blocked(jid)
	user_listed_external(jid)
}

user_blocked(jid) if lower(jid) in {lower(u) | some u in blocked_users}

user_listed_external(_) if not external_users_configured

user_listed_external(jid) if {
	external_users_configured
	lower(jid) in {lower(u) | some u in data.xmppedge.external_users}
}

user_listed_external(jid) if {
	external_users_configured
	some entry in data.xmppedge.external_users
	startswith(entry, "group:")
	members := groups[substring(entry, 6, -1)]
	lower(jid) in {lower(m) | some m in members}
}
