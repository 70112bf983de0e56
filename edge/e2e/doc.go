// Package e2e holds xmppedge's end-to-end tests: real Prosody servers, real
// XMPP clients and a real DNS server on loopback (see package testbed). The
// package has no code of its own beyond its tests.
package e2e
