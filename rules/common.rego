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
allowing_entries(domain, direction) := [e |
	some e in partner_entries(domain)
	direction_allowed(e, direction)
]

is_partner(domain, direction) if count(allowing_entries(domain, direction)) > 0

# require_cert(domain, direction): a matching entry asks for certificate
# authentication (dialback alone is not enough).
require_cert(domain, direction) if {
	some e in allowing_entries(domain, direction)
	e.require_cert == true
}

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
