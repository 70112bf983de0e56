# The stanza decision: may this stanza cross the edge?
#
# Input: direction, kind, type, id, from/to {full, bare, domain},
# children [{name, namespace}], body, subject, thread,
# security_label {marking, fgcolor, bgcolor, label} (absent without one),
# session {…the session input} (the stream it arrived on).
# Result: {"allow": bool, "reason": string, "error": condition, "audit": "none"|"meta"|"hash"|"full"}.
package xmppedge.stanza

import data.xmppedge.common

default decision := {"allow": false, "reason": "no rule allowed this stanza", "audit": "meta"}

decision := {"allow": false, "reason": concat("; ", sort(deny)), "error": "policy-violation", "audit": audit} if count(deny) > 0

decision := {"allow": true, "audit": audit} if count(deny) == 0

# The remote domain of the stanza, and the internal user's bare JID. (Rules
# name the fields they read, input.to.domain rather than input.to, so that
# decisions are cached per domain and user, not per resource.)
remote_domain := input.to.domain if input.direction == "outbound"

else := input.from.domain

local_bare := input.from.bare if input.direction == "outbound"

else := input.to.bare

# What the audit log keeps: the metadata by default, everything for the
# domains listed under audit_full (compliance cases).
default audit := "meta"

audit := "full" if xmppedge.domain_in(remote_domain, common.audit_full)

# Partners: the stanza's remote domain must be a partner for this
# direction (the session was checked too; this also covers streams that
# carry several domain pairs and a policy that changed since).
deny contains sprintf("%s is not a federation partner for %s traffic", [remote_domain, input.direction]) if not partner_ok

partner_ok if common.is_partner(remote_domain, input.direction)

# Per-user rules, for user JIDs (not the server's own domain JID).
deny contains sprintf("%s may not communicate outside the organisation", [local_bare]) if {
	contains(local_bare, "@")
	not common.user_may_talk_outside(local_bare)
}

# Confidential content stays inside: outbound messages only.
outbound_message if {
	input.direction == "outbound"
	input.kind == "message"
}

deny contains "message contains a confidential keyword" if {
	outbound_message
	xmppedge.contains_any(input.body, common.confidential_keywords)
}

deny contains "message contains a confidential keyword" if {
	outbound_message
	input.subject != ""
	xmppedge.contains_any(input.subject, common.confidential_keywords)
}

deny contains "message matches a confidential pattern" if {
	outbound_message
	xmppedge.matches_any(input.body, common.confidential_patterns)
}

deny contains "message matches a confidential pattern" if {
	outbound_message
	input.subject != ""
	xmppedge.matches_any(input.subject, common.confidential_patterns)
}

deny contains sprintf("stanza carries the security label %s", [input.security_label.marking]) if {
	input.direction == "outbound"
	upper(input.security_label.marking) in {upper(m) | some m in common.confidential_markings}
}

# Group chat: outbound traffic to a room is allowed only for the rooms in
# muc.allowed_rooms: any stanza to a listed MUC service, and any groupchat
# message whatever the service.
deny contains sprintf("room %s is not open to outside group chat", [input.to.bare]) if {
	input.direction == "outbound"
	to_room
	not lower(input.to.bare) in {lower(r) | some r in common.muc_allowed_rooms}
}

to_room if xmppedge.domain_in(input.to.domain, common.muc_services)

to_room if {
	input.kind == "message"
	input.type == "groupchat"
}
