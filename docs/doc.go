// Package docs holds xmppedge's operator guides (Markdown), the example
// configuration, the systemd unit and the Grafana dashboard. It has no code:
// its tests (docs_test.go) check that every configuration shown in the guides
// is accepted by the same strict parser as `xmppedge check`, that the Prosody
// snippets are valid Lua, that the systemd unit passes `systemd-analyze
// verify`, and that the dashboard only queries metrics xmppedge registers.
package docs
