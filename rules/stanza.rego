# The stanza decision: may this stanza cross the edge?
#
# Input: direction, kind, type, id, from/to {full, bare, domain},
# children [{name, namespace}], body, subject, thread,
# security_label {marking, fgcolor, bgcolor, label} (absent without one),
# session {…the session input} (the stream it arrived on),
# encryption ("omemo", "omemo2", "openpgp", "otr", "xep0380:NS" or ""),
# file_transfer [{method: "oob"|"jingle"|"ibb"|"socks5", host}],
# body_is_fallback (payload facts, filled when a rule reads them).
# Result: {"allow": bool, "reason": string, "error": condition,
#          "audit": "none"|"meta"|"hash"|"full",
#          "strip": [{"name", "namespace"}] (children removed before forwarding)}.
package xmppedge.stanza

import data.xmppedge.common

default decision := {"allow": false, "reason": "no rule allowed this stanza", "audit": "meta"}

decision := {"allow": false, "reason": concat("; ", sort(deny)), "error": "policy-violation", "audit": audit} if count(deny) > 0

decision := {"allow": true, "audit": audit} if {
	count(deny) == 0
	count(strip) == 0
}

decision := {"allow": true, "audit": audit, "strip": strip} if {
	count(deny) == 0
	count(strip) > 0
}

# The remote domain of the stanza, and the internal user's bare JID. (Rules
# name the fields they read, input.to.domain rather than input.to, so that
# decisions are cached per domain and user, not per resource. They are two
# rules each rather than an else: the gateway's decision cache narrows its
# keys by partial evaluation, which sees through these but not through an
# else, and an outbound stanza's key then holds no recipient.)
remote_domain := input.to.domain if input.direction == "outbound"

remote_domain := input.from.domain if input.direction != "outbound"

local_bare := input.from.bare if input.direction == "outbound"

local_bare := input.to.bare if input.direction != "outbound"

# What the audit log keeps: the metadata by default, everything for the
# domains listed under audit_full (compliance cases). Encrypted stanzas and
# file transfers keep this level too: the metadata record holds the facts
# (encryption, transfer methods and hosts), and a full record of an
# encrypted stanza holds only ciphertext.
default audit := "meta"

audit := "full" if {
	common.remote_given
	input.remote.audit_full
}

audit := "full" if {
	not common.remote_given
	xmppedge.domain_in(remote_domain, common.audit_full)
}

# Partners: the stanza's remote domain must be a partner for this
# direction (the session was checked too; this also covers streams that
# carry several domain pairs and a policy that changed since).
deny contains sprintf("%s is not a federation partner for %s traffic", [remote_domain, input.direction]) if not partner_ok

partner_ok if count(remote_partner) > 0

# The partner entries of the remote domain for this direction, looked up
# once per decision: given by the gateway (common.remote_given), else
# looked up by domain.
remote_partner := common.entries_allowing(remote_entries, input.direction)

remote_entries := input.remote.partner if common.remote_given

remote_entries := common.partner_entries(remote_domain) if not common.remote_given

# Per-user rules, for user JIDs (not the server's own domain JID), when
# data has any (common.user_rules_configured). What the data says of the
# local user is given by the gateway (input.local: common.local_given),
# else looked up here: then an allowed user's decision need not read the
# JID (see common.remote_given).
deny contains sprintf("%s may not communicate outside the organisation", [local_bare]) if {
	common.user_rules_configured
	local_user
	not local_may_talk_outside
}

local_user if {
	common.local_given
	input.local.user
}

local_user if {
	not common.local_given
	contains(local_bare, "@")
}

local_may_talk_outside if {
	common.local_given
	input.local.may_talk_outside
}

local_may_talk_outside if {
	not common.local_given
	common.user_may_talk_outside(local_bare)
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

# (input.remote is of the recipient's domain for outbound stanzas only.)
to_room if {
	common.remote_given
	input.direction == "outbound"
	input.remote.muc_service
}

to_room if {
	not common.remote_given
	xmppedge.domain_in(input.to.domain, common.muc_services)
}

to_room if {
	common.remote_given
	input.direction != "outbound"
	xmppedge.domain_in(input.to.domain, common.muc_services)
}

to_room if {
	input.kind == "message"
	input.type == "groupchat"
}

# End-to-end encryption: the gateway sees that a stanza is encrypted (OMEMO,
# OpenPGP, OTR, or another method named by a XEP-0380 tag), never what it
# says, so the content rules above cannot check it. Outbound stanzas to a
# partner without allow_e2ee are refused (see common.allow_e2ee for the
# default); inbound ones are not checked, as with confidential content.
deny contains sprintf("end-to-end encrypted messages (%s) to %s are not permitted: switch encryption off for this contact", [encryption_name, remote_domain]) if {
	input.encryption != ""
	input.direction == "outbound"
	not common.allow_e2ee(remote_partner)
}

encryption_names := {"omemo": "OMEMO", "omemo2": "OMEMO", "openpgp": "OpenPGP", "otr": "OTR"}

encryption_name := n if {
	n := encryption_names[input.encryption]
} else := trim_prefix(input.encryption, "xep0380:")

# File transfers, outbound: only the methods in the partner's allow_files
# (default: links and Jingle), and links only to the upload services of
# upload_hosts. In-band (IBB) and SOCKS5 bytestreams — also as the
# transport of a Jingle offer — are refused unless listed.
deny contains sprintf("file transfer by %s to %s is not permitted", [transfer_name(f.method), remote_domain]) if {
	input.direction == "outbound"
	some f in input.file_transfer
	not f.method in common.allow_files(remote_partner)
}

deny contains sprintf("file links to %s are not permitted: share files through the company's upload service", [host_shown(f.host)]) if {
	input.direction == "outbound"
	some f in input.file_transfer
	f.method == "oob"
	"oob" in common.allow_files(remote_partner)
	not common.upload_host_allowed(f.host, remote_partner)
}

transfer_names := {
	"oob": "link (out-of-band URL)",
	"jingle": "Jingle",
	"ibb": "in-band bytestream (IBB)",
	"socks5": "SOCKS5 bytestream",
}

transfer_name(method) := n if {
	n := transfer_names[method]
} else := method

host_shown(host) := host if host != ""

else := "a link without a host"

# Children removed from the stanzas let through (the gateway re-serialises
# them). Outbound presence keeps its availability (<show/>, the type) and
# loses <status/> for partners with strip_presence_status, and the children
# listed in strip_presence (e.g. vcard-temp:x:update avatar hashes).
outbound_presence if {
	input.kind == "presence"
	input.direction == "outbound"
}

strip contains {"name": "status", "namespace": "jabber:server"} if {
	outbound_presence
	common.strip_presence_status(remote_partner)
}

strip contains c if {
	outbound_presence
	some c in common.strip_presence
}

strip contains c if {
	outbound_presence
	some e in remote_partner
	some c in e.strip_presence
}
