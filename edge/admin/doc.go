// Package admin is xmppedge's administration API: list the sessions, close
// one, reload the configuration. It is served on the operations listener
// next to /metrics and the health endpoints (see edge/metrics), and only
// when the configuration enables it.
//
// # Model
//
// The API knows nothing about the gateway's types: it talks to a Source,
// which the caller implements on top of the gateway (or with Funcs, an
// adapter from plain functions), so this package never imports edge and
// cannot create an import cycle with it.
//
//	GET  /admin/sessions             200, the Source's sessions as JSON
//	POST /admin/sessions/{id}/close  200 "closed", or 404 when no session has the id
//	POST /reload                     200 "reloaded", or 500 with the errors, one per line;
//	                                 the old configuration keeps running
//
// # Exposure
//
// The API can drop sessions and reload the configuration, and it has no
// authentication of its own: its protection is where it listens. The
// operations listener binds loopback by default (the caller enforces that);
// reach it from elsewhere through an authenticating proxy. The state-changing
// endpoints are POST only and refuse cross-origin browser requests
// (http.CrossOriginProtection), so a web page open on an operator's machine
// cannot drive them.
package admin
