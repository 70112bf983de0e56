package xmppedge.session

decision := {"allow": false, "reason": "test rules"}
