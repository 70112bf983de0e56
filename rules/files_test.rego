# Tests of the file transfer rules (stanza.rego, common.allow_files,
# common.upload_host_allowed). The data they rely on is set with `with`,
# whatever the data file loaded with the tests says.
package xmppedge.files_test

import data.xmppedge.stanza

partners := [
	{"domain": "partner.test"},
	{"domain": "bulk.test", "allow_files": ["oob", "jingle", "ibb", "socks5"]},
	{"domain": "nofiles.test", "allow_files": []},
	{"domain": "shared.test", "upload_hosts": ["files.shared.test"]},
]

out_to(domain, transfers) := {
	"direction": "outbound",
	"kind": "message",
	"type": "chat",
	"id": "f1",
	"from": {"full": "alice@company.test/phone", "bare": "alice@company.test", "domain": "company.test"},
	"to": {"full": concat("", ["bob@", domain]), "bare": concat("", ["bob@", domain]), "domain": domain},
	"children": [{"name": "body", "namespace": "jabber:server"}, {"name": "x", "namespace": "jabber:x:oob"}],
	"body": "https://upload.company.test/u/abc/report.pdf",
	"subject": "",
	"thread": "",
	"encryption": "",
	"file_transfer": transfers,
	"body_is_fallback": true,
}

oob(host) := {"method": "oob", "host": host}

jingle := {"method": "jingle", "host": ""}

ibb := {"method": "ibb", "host": ""}

socks5 := {"method": "socks5", "host": ""}

# decide decides x with the top-level allow_files given (null: none).
decide(x, top) := d if {
	d := stanza.decision with input as x
		with data.xmppedge.partners as partners
		with data.xmppedge.allow_files as top
		with data.xmppedge.upload_hosts as ["upload.company.test", "*.cdn.company.test"]
		with data.xmppedge.audit_full as []
}

test_link_to_company_upload_allowed if {
	d := decide(out_to("partner.test", [oob("upload.company.test")]), null)
	d.allow == true
	d.audit == "meta"
}

test_link_to_wildcard_upload_host if decide(out_to("partner.test", [oob("eu.cdn.company.test")]), null).allow

test_link_elsewhere_refused if {
	d := decide(out_to("partner.test", [oob("files.example.net")]), null)
	d.allow == false
	d.reason == "file links to files.example.net are not permitted: share files through the company's upload service"
	d.error == "policy-violation"
	d.audit == "meta"
}

test_link_without_host_refused if {
	contains(decide(out_to("partner.test", [oob("")]), null).reason, "a link without a host")
}

test_partner_upload_host_for_that_partner_only if {
	decide(out_to("shared.test", [oob("files.shared.test")]), null).allow
	not decide(out_to("partner.test", [oob("files.shared.test")]), null).allow
}

test_no_upload_hosts_refuses_links if {
	d := stanza.decision with input as out_to("partner.test", [oob("upload.company.test")])
		with data.xmppedge.partners as partners
		with data.xmppedge.allow_files as null
		with data.xmppedge.upload_hosts as []
	d.allow == false
}

test_jingle_allowed_by_default if decide(out_to("partner.test", [jingle]), null).allow

test_ibb_refused_by_default if {
	d := decide(out_to("partner.test", [ibb]), null)
	d.allow == false
	d.reason == "file transfer by in-band bytestream (IBB) to partner.test is not permitted"
}

test_socks5_refused_by_default if {
	d := decide(out_to("partner.test", [socks5]), null)
	d.allow == false
	d.reason == "file transfer by SOCKS5 bytestream to partner.test is not permitted"
}

# A Jingle offer over a SOCKS5 transport: the gateway reports both.
test_jingle_over_socks5_refused if {
	d := decide(out_to("partner.test", [jingle, socks5]), null)
	d.allow == false
	d.reason == "file transfer by SOCKS5 bytestream to partner.test is not permitted"
}

test_partner_allows_bytestreams if {
	decide(out_to("bulk.test", [ibb]), null).allow
	decide(out_to("bulk.test", [jingle, socks5]), null).allow
}

test_partner_allows_no_files if {
	d := decide(out_to("nofiles.test", [oob("upload.company.test")]), null)
	d.allow == false
	d.reason == "file transfer by link (out-of-band URL) to nofiles.test is not permitted"
	# The method is refused: the host is not looked at.
	decide(out_to("nofiles.test", [oob("files.example.net")]), null).reason == d.reason
}

test_top_level_allow_files_is_the_default if {
	not decide(out_to("partner.test", [jingle]), ["oob"]).allow
	decide(out_to("partner.test", [ibb]), ["ibb"]).allow
	decide(out_to("bulk.test", [socks5]), ["oob"]).allow
}

test_both_reasons if {
	d := decide(out_to("partner.test", [oob("files.example.net"), ibb]), null)
	d.allow == false
	contains(d.reason, "files.example.net")
	contains(d.reason, "IBB")
}

test_inbound_not_checked if {
	x := object.union(out_to("partner.test", [ibb, oob("files.partner.test")]), {
		"direction": "inbound",
		"from": {"full": "bob@partner.test/pc", "bare": "bob@partner.test", "domain": "partner.test"},
		"to": {"full": "alice@company.test", "bare": "alice@company.test", "domain": "company.test"},
	})
	decide(x, null).allow
}

test_audit_full_partner_keeps_full if {
	d := stanza.decision with input as out_to("partner.test", [ibb])
		with data.xmppedge.partners as partners
		with data.xmppedge.allow_files as null
		with data.xmppedge.audit_full as ["partner.test"]
	d.allow == false
	d.audit == "full"
}
