package xmppedge.common_test

import data.xmppedge.common

partners := [
	{"domain": "partner.test", "direction": "both"},
	{"domain": "*.example.org", "direction": "both"},
	{"domain": "in.test", "direction": "inbound"},
	{"domain": "secure.test", "require_cert": true},
	{"domain": "xn--bcher-kva.example"},
]

test_exact_domain if common.is_partner("partner.test", "inbound") with data.xmppedge.partners as partners

test_domain_case_insensitive if common.is_partner("Partner.TEST", "outbound") with data.xmppedge.partners as partners

test_unlisted_domain if not common.is_partner("other.test", "inbound") with data.xmppedge.partners as partners

test_wildcard_one_label if common.is_partner("chat.example.org", "inbound") with data.xmppedge.partners as partners

test_wildcard_several_labels if common.is_partner("a.chat.example.org", "inbound") with data.xmppedge.partners as partners

test_wildcard_not_the_apex if not common.is_partner("example.org", "inbound") with data.xmppedge.partners as partners

test_wildcard_whole_labels_only if not common.is_partner("badexample.org", "inbound") with data.xmppedge.partners as partners

test_direction_inbound_only if {
	common.is_partner("in.test", "inbound") with data.xmppedge.partners as partners
	not common.is_partner("in.test", "outbound") with data.xmppedge.partners as partners
}

test_missing_direction_is_both if common.is_partner("secure.test", "outbound") with data.xmppedge.partners as partners

test_require_cert if common.require_cert("secure.test", "inbound") with data.xmppedge.partners as partners

test_no_require_cert if not common.require_cert("partner.test", "inbound") with data.xmppedge.partners as partners

# U-labels in data match the A-label the gateway sends.
test_idn_u_label_in_data if {
	common.is_partner("xn--bcher-kva.example", "inbound") with data.xmppedge.partners as [{"domain": "bücher.example"}]
}

test_most_specific_entry_wins if {
	ps := [
		{"domain": "*.example.org", "require_cert": true},
		{"domain": "chat.example.org", "require_cert": false},
	]
	not common.require_cert("chat.example.org", "inbound") with data.xmppedge.partners as ps
	common.require_cert("mail.example.org", "inbound") with data.xmppedge.partners as ps
}

test_users_unrestricted_by_default if common.user_may_talk_outside("anyone@company.test")

test_blocked_user if {
	not common.user_may_talk_outside("mallory@company.test") with data.xmppedge.blocked_users as ["mallory@company.test"]
}

test_external_users_listed if {
	common.user_may_talk_outside("alice@company.test") with data.xmppedge.external_users as ["alice@company.test"]
	not common.user_may_talk_outside("bob@company.test") with data.xmppedge.external_users as ["alice@company.test"]
}

test_external_users_by_group if {
	common.user_may_talk_outside("bob@company.test") with data.xmppedge.external_users as ["group:eng"]
		with data.xmppedge.groups as {"eng": ["bob@company.test"]}
	not common.user_may_talk_outside("carol@company.test") with data.xmppedge.external_users as ["group:eng"]
		with data.xmppedge.groups as {"eng": ["bob@company.test"]}
}

test_blocked_beats_external if {
	not common.user_may_talk_outside("alice@company.test") with data.xmppedge.external_users as ["alice@company.test"]
		with data.xmppedge.blocked_users as ["alice@company.test"]
}

# user_rules_configured: any blocked user, or external_users present (even
# empty: then nobody may talk outside).
test_no_user_rules if not common.user_rules_configured with data.xmppedge.blocked_users as []

test_user_rules_blocked if common.user_rules_configured with data.xmppedge.blocked_users as ["m@company.test"]

test_user_rules_external_empty if common.user_rules_configured with data.xmppedge.external_users as []
