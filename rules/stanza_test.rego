package xmppedge.stanza_test

import data.xmppedge.stanza

data_doc := {
	"partners": [{"domain": "partner.test"}, {"domain": "conference.partner.test"}],
	"confidential": {
		"keywords": ["CONFIDENTIAL", "INTERNAL ONLY"],
		"patterns": [`\b(?:\d[ -]?){13,16}\b`],
	},
	"muc": {"services": ["conference.partner.test"], "allowed_rooms": ["lobby@conference.partner.test"]},
	"audit_full": ["partner.test"],
}

out := {
	"direction": "outbound",
	"kind": "message",
	"type": "chat",
	"id": "m1",
	"from": {"full": "alice@company.test/phone", "bare": "alice@company.test", "domain": "company.test"},
	"to": {"full": "bob@partner.test", "bare": "bob@partner.test", "domain": "partner.test"},
	"children": [{"name": "body", "namespace": "jabber:server"}],
	"body": "hello",
	"subject": "",
	"thread": "",
}

inb := object.union(out, {
	"direction": "inbound",
	"from": {"full": "bob@partner.test/pc", "bare": "bob@partner.test", "domain": "partner.test"},
	"to": {"full": "alice@company.test", "bare": "alice@company.test", "domain": "company.test"},
})

decide(x) := d if {
	d := stanza.decision with input as x
		with data.xmppedge.partners as data_doc.partners
		with data.xmppedge.confidential as data_doc.confidential
		with data.xmppedge.muc as data_doc.muc
		with data.xmppedge.audit_full as data_doc.audit_full
}

test_plain_message_allowed if {
	d := decide(out)
	d.allow == true
	d.audit == "full"
}

test_audit_meta_by_default if {
	d := stanza.decision with input as out with data.xmppedge.partners as data_doc.partners
	d.audit == "meta"
}

test_unlisted_domain_denied if {
	d := decide(object.union(out, {"to": {"full": "x@evil.test", "bare": "x@evil.test", "domain": "evil.test"}}))
	d.allow == false
	d.error == "policy-violation"
}

test_keyword_denied if {
	d := decide(object.union(out, {"body": "this is Confidential, sorry"}))
	d.allow == false
	d.reason == "message contains a confidential keyword"
	d.error == "policy-violation"
}

test_keyword_phrase_in_subject if not decide(object.union(out, {"subject": "internal only: plans"})).allow

test_pattern_denied if {
	d := decide(object.union(out, {"body": "card 4111 1111 1111 1111 exp 12/30"}))
	d.allow == false
	d.reason == "message matches a confidential pattern"
}

test_short_number_allowed if decide(object.union(out, {"body": "call me at 1234"})).allow

test_inbound_keyword_allowed if decide(object.union(inb, {"body": "CONFIDENTIAL stuff from a partner"})).allow

test_security_label_denied if {
	d := decide(object.union(out, {"security_label": {"marking": "SECRET", "fgcolor": "red", "bgcolor": "", "label": ""}}))
	d.allow == false
	contains(d.reason, "security label SECRET")
}

test_unclassified_label_allowed if {
	decide(object.union(out, {"security_label": {"marking": "UNCLASSIFIED", "fgcolor": "", "bgcolor": "", "label": ""}})).allow
}

test_muc_room_not_listed if {
	room := {"full": "secret@conference.partner.test/alice", "bare": "secret@conference.partner.test", "domain": "conference.partner.test"}
	not decide(object.union(out, {"kind": "presence", "type": "", "body": "", "to": room})).allow
}

test_muc_room_listed if {
	room := {"full": "lobby@conference.partner.test/alice", "bare": "lobby@conference.partner.test", "domain": "conference.partner.test"}
	decide(object.union(out, {"kind": "presence", "type": "", "body": "", "to": room})).allow
}

test_groupchat_to_unknown_service_denied if {
	not decide(object.union(out, {"type": "groupchat"})).allow
}

test_external_users_outbound if {
	not decide(out).allow with data.xmppedge.external_users as ["carol@company.test"]
	decide(out).allow with data.xmppedge.external_users as ["alice@company.test"]
}

test_external_users_inbound if {
	not decide(inb).allow with data.xmppedge.external_users as ["carol@company.test"]
}

test_blocked_user if {
	d := decide(out) with data.xmppedge.blocked_users as ["alice@company.test"]
	d.allow == false
	contains(d.reason, "alice@company.test may not communicate outside")
}

test_server_jid_not_a_user if {
	server := {"full": "company.test", "bare": "company.test", "domain": "company.test"}
	decide(object.union(out, {"kind": "iq", "type": "get", "body": "", "from": server})).allow with data.xmppedge.external_users as []
}

# input.remote, as the gateway gives it, is what the rules read of the
# remote domain: partner entries, MUC service, audit_full; not the lookups.
remote := {"partner": [{}], "muc_service": false, "audit_full": false}

test_gateway_facts_partner if {
	not decide(object.union(out, {"remote": object.union(remote, {"partner": []})})).allow
	decide(object.union(out, {"to": {"full": "x@evil.test", "bare": "x@evil.test", "domain": "evil.test"}, "remote": remote})).allow
}

test_gateway_facts_audit if {
	decide(object.union(out, {"remote": remote})).audit == "meta" # data: audit_full [partner.test]
	decide(object.union(inb, {"remote": object.union(remote, {"audit_full": true})})).audit == "full"
}

test_gateway_facts_room if {
	room := {"full": "secret@rooms.evil.test/alice", "bare": "secret@rooms.evil.test", "domain": "rooms.evil.test"}
	x := object.union(out, {"kind": "presence", "to": room})
	decide(object.union(x, {"remote": remote})).allow
	d := decide(object.union(x, {"remote": object.union(remote, {"muc_service": true})}))
	d.allow == false
	contains(d.reason, "room secret@rooms.evil.test is not open")
}

# input.local, as the gateway gives it, is what the rules read of the local
# user: not the user lists.
test_gateway_facts_local_user if {
	blocked := object.union(out, {"local": {"user": true, "may_talk_outside": false}})
	d := decide(blocked) with data.xmppedge.blocked_users as ["someone-else@company.test"]
	d.allow == false
	contains(d.reason, "alice@company.test may not communicate outside")
	allowed := object.union(out, {"local": {"user": true, "may_talk_outside": true}})
	decide(allowed).allow with data.xmppedge.blocked_users as ["alice@company.test"]
	server := object.union(out, {"local": {"user": false, "may_talk_outside": false}})
	decide(server).allow with data.xmppedge.blocked_users as ["alice@company.test"]
}
