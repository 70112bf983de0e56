# Tests of the end-to-end encryption rule (stanza.rego, common.allow_e2ee).
# The data they rely on is set with `with`, whatever the data file loaded
# with the tests says.
package xmppedge.e2ee_test

import data.xmppedge.stanza

partners := [
	{"domain": "partner.test"},
	{"domain": "friend.test", "allow_e2ee": true},
	{"domain": "strict.test", "allow_e2ee": false},
	{"domain": "*.example.org", "allow_e2ee": true},
]

keywords := {"keywords": ["CONFIDENTIAL"]}

out_to(domain, encryption) := {
	"direction": "outbound",
	"kind": "message",
	"type": "chat",
	"id": "e1",
	"from": {"full": "alice@company.test/phone", "bare": "alice@company.test", "domain": "company.test"},
	"to": {"full": concat("", ["bob@", domain]), "bare": concat("", ["bob@", domain]), "domain": domain},
	"children": [{"name": "encrypted", "namespace": "eu.siacs.conversations.axolotl"}, {"name": "body", "namespace": "jabber:server"}],
	"body": "I sent you an OMEMO encrypted message but your client doesn't seem to support that.",
	"subject": "",
	"thread": "",
	"encryption": encryption,
	"file_transfer": [],
	"body_is_fallback": encryption != "",
}

# decide decides x with the confidential section and top-level allow_e2ee
# given (null: no top-level allow_e2ee).
decide(x, confidential, top) := d if {
	d := stanza.decision with input as x
		with data.xmppedge.partners as partners
		with data.xmppedge.confidential as confidential
		with data.xmppedge.allow_e2ee as top
		with data.xmppedge.audit_full as []
}

test_refused_by_default_with_keywords if {
	d := decide(out_to("partner.test", "omemo"), keywords, null)
	d.allow == false
	d.reason == "end-to-end encrypted messages (OMEMO) to partner.test are not permitted: switch encryption off for this contact"
	d.error == "policy-violation"
	d.audit == "meta"
}

test_refused_by_default_with_patterns if {
	not decide(out_to("partner.test", "omemo"), {"patterns": [`\d{16}`]}, null).allow
}

test_allowed_by_default_without_keywords if {
	d := decide(out_to("partner.test", "omemo"), {}, null)
	d.allow == true
	d.audit == "meta"
}

test_partner_allow_e2ee if {
	d := decide(out_to("friend.test", "omemo2"), keywords, null)
	d.allow == true
	d.audit == "meta"
}

test_partner_refuses_without_keywords if {
	d := decide(out_to("strict.test", "openpgp"), {}, null)
	d.allow == false
	contains(d.reason, "(OpenPGP) to strict.test are not permitted")
}

test_wildcard_partner_setting if decide(out_to("chat.example.org", "omemo"), keywords, null).allow

test_plain_message_unaffected if decide(out_to("partner.test", ""), keywords, null).allow

test_method_named_in_reason if {
	contains(decide(out_to("partner.test", "otr"), keywords, null).reason, "(OTR)")
	contains(decide(out_to("partner.test", "omemo2"), keywords, null).reason, "(OMEMO)")
	contains(decide(out_to("partner.test", "xep0380:urn:example:crypt"), keywords, null).reason, "(urn:example:crypt)")
}

# Choice 1: refuse E2EE to every partner, keywords or not (a top-level line).
test_top_level_refuses if {
	not decide(out_to("partner.test", "omemo"), {}, false).allow
}

# Choice 2: allow it everywhere (and record it: the audit keeps meta).
test_top_level_allows if {
	d := decide(out_to("partner.test", "omemo"), keywords, true)
	d.allow == true
	d.audit == "meta"
	not decide(out_to("strict.test", "omemo"), keywords, true).allow
}

# Choice 3: refuse at the top, allow for named partners.
test_named_partners_only if {
	decide(out_to("friend.test", "omemo"), {}, false).allow
	not decide(out_to("partner.test", "omemo"), {}, false).allow
}

# Inbound encrypted messages are not checked (as with keywords).
test_inbound_not_checked if {
	x := object.union(out_to("partner.test", "omemo"), {
		"direction": "inbound",
		"from": {"full": "bob@partner.test/pc", "bare": "bob@partner.test", "domain": "partner.test"},
		"to": {"full": "alice@company.test", "bare": "alice@company.test", "domain": "company.test"},
	})
	decide(x, keywords, null).allow
}

# A fallback body is still scanned: the sender chooses it.
test_fallback_body_still_scanned if {
	x := object.union(out_to("friend.test", "omemo"), {"body": "CONFIDENTIAL plans"})
	d := decide(x, keywords, null)
	d.allow == false
	d.reason == "message contains a confidential keyword"
}

test_audit_full_partner_keeps_full if {
	d := stanza.decision with input as out_to("friend.test", "omemo")
		with data.xmppedge.partners as partners
		with data.xmppedge.confidential as keywords
		with data.xmppedge.allow_e2ee as null
		with data.xmppedge.audit_full as ["friend.test"]
	d.allow == true
	d.audit == "full"
}

# An input without the payload facts (a gateway that did not compute them,
# an old sample file) is treated as unencrypted.
test_missing_facts if {
	x := json.remove(out_to("partner.test", "omemo"), ["encryption", "file_transfer", "body_is_fallback"])
	decide(x, keywords, null).allow
}
