# Tests of stripping children from outbound presence (stanza.rego strip,
# common.strip_presence_status, common.strip_presence).
package xmppedge.strip_test

import data.xmppedge.stanza

partners := [
	{"domain": "partner.test"},
	{"domain": "chatty.test", "strip_presence_status": false},
	{"domain": "private.test", "strip_presence_status": true, "strip_presence": [{"name": "x", "namespace": "vcard-temp:x:update"}]},
]

status := {"name": "status", "namespace": "jabber:server"}

avatar := {"name": "x", "namespace": "vcard-temp:x:update"}

presence_to(domain) := {
	"direction": "outbound",
	"kind": "presence",
	"type": "",
	"id": "p1",
	"from": {"full": "alice@company.test/phone", "bare": "alice@company.test", "domain": "company.test"},
	"to": {"full": concat("", ["bob@", domain]), "bare": concat("", ["bob@", domain]), "domain": domain},
	"children": [{"name": "show", "namespace": "jabber:server"}, status, avatar],
	"body": "",
	"subject": "",
	"thread": "",
}

# decide decides x with the top-level strip_presence_status and
# strip_presence given (a `with` inside a function wins over one outside).
decide(x, top_status, top_children) := d if {
	d := stanza.decision with input as x
		with data.xmppedge.partners as partners
		with data.xmppedge.strip_presence_status as top_status
		with data.xmppedge.strip_presence as top_children
}

test_off_by_default if {
	d := decide(presence_to("partner.test"), false, [])
	d.allow == true
	not d.strip
}

test_top_level_switch if {
	d := decide(presence_to("partner.test"), true, [])
	d.allow == true
	d.strip == {status}
}

test_partner_overrides_top_level if {
	d := decide(presence_to("chatty.test"), true, [])
	d.allow == true
	not d.strip
}

test_partner_status_and_avatar if {
	d := decide(presence_to("private.test"), false, [])
	d.strip == {status, avatar}
}

test_top_level_avatar_hashes if {
	d := decide(presence_to("partner.test"), false, [avatar])
	d.strip == {avatar}
}

test_inbound_presence_untouched if {
	x := object.union(presence_to("partner.test"), {
		"direction": "inbound",
		"from": {"full": "bob@partner.test/pc", "bare": "bob@partner.test", "domain": "partner.test"},
		"to": {"full": "alice@company.test", "bare": "alice@company.test", "domain": "company.test"},
	})
	d := decide(x, true, [])
	d.allow == true
	not d.strip
}

test_messages_untouched if {
	x := object.union(presence_to("partner.test"), {"kind": "message", "type": "chat"})
	d := decide(x, true, [])
	d.allow == true
	not d.strip
}

test_denied_presence_has_no_strip if {
	d := decide(presence_to("stranger.test"), true, [])
	d.allow == false
	not d.strip
}
