// Package testbed runs real federation parts on loopback for xmppedge's
// end-to-end tests: Prosody servers (Debian's prosody with lua-unbound),
// ejabberd servers (Debian's ejabberd), XMPP clients (Debian's
// python3-slixmpp, driven by the embedded client.py over JSON lines).
// Certificates come from the caller (e.g. certs/certstest); without one, a
// server gets a self-signed certificate and federates by dialback.
//
// Every part binds its own 127.0.0.x address, is bounded in time, and is
// stopped by t.Cleanup (process groups are killed). Nothing reads or writes
// the machine's own Prosody or ejabberd configuration: each server gets a
// config file, data, log and certificate folder under t.TempDir().
//
// Prosody facts the test bed relies on (Prosody 0.12.3, see
// shared/TESTBED.md):
//   - it resolves s2s peers through libunbound, forwarding to the test DNS
//     server given in ProsodyOptions.DNS ("test." is made transparent, or
//     libunbound answers NXDOMAIN for it by itself);
//   - a stanza to a domain whose server cannot be reached bounces with
//     remote-server-not-found (no stream was ever opened) or
//     remote-server-timeout (a stream had opened, then failed);
//   - Nagle is disabled (network_settings) so that the first stanza on a new
//     s2s path is not delayed by ~150 ms.
//
// ejabberd (Debian 12's 23.01, StartEjabberd) runs as the Erlang VM
// directly, in the foreground, as the current user, with its own
// ejabberd.yml, Mnesia spool, log folder and node name
// (ejabberd_<ip>_<random>@localhost); Erlang distribution listens on
// 127.0.0.1, port 42000 + the last byte of the instance's address, without
// epmd, and Ejabberd.Ctl runs ejabberdctl commands through it as Debian's
// ejabberdctl does. Facts it relies on:
//   - ejabberd asks Erlang's resolver (inet_res) for SRV records
//     (_xmpps-server and _xmpp-server, direct TLS targets included): the
//     resolver is pointed at EjabberdOptions.DNS by an ERL_INETRC file;
//   - it resolves the SRV target's address through libc
//     (net:getaddrinfo): EjabberdOptions.Hosts go into a private hosts
//     file bind-mounted over /etc/hosts in a mount namespace of its own
//     (unshare --mount), so the machine's file is untouched;
//   - users are registered at start by ejabberd_admin:register/3 (what
//     `ejabberdctl register` runs), before the test sees it ready;
//   - the node that runs an ejabberdctl command finds the node's host,
//     localhost, through the same ERL_INETRC: the inetrc file has a host
//     line for it, or it would ask the test DNS;
//   - it cannot verify a certificate whose subjectAltName has a domain
//     XmppAddr (p1_xmpp's get_cert_domains crashes the stream): give it
//     peers with DNS-IDs (and SRV-IDs) only.
//
// Clients accept every subscription request automatically and answer it with
// a subscription request of their own (slixmpp's auto_authorize and
// auto_subscribe), so one Subscribe call gives presence both ways.
//
// Require(t) checks the prerequisites: it fails the test with the apt-get
// command to run when they are missing, or skips it when XMPPEDGE_E2E=skip.
// RequireEjabberd(t), for the tests that run ejabberd too, fails the test
// when ejabberd is missing in CI (CI set) and skips it elsewhere, as the
// suite does for testssl.sh and promtool.
//
// Environment:
//   - XMPPEDGE_E2E=skip: skip the end-to-end tests;
//   - XMPPEDGE_E2E_VERBOSE=1: log the Prosody and ejabberd log tails and
//     client logs even when the test passes (they are always logged when it
//     fails);
//   - XMPPEDGE_E2E_KEEP=DIR: copy each Prosody's whole log and config to DIR
//     as TESTNAME-DOMAIN.log / .cfg.lua when it stops, each ejabberd's as
//     TESTNAME-ejabberd-DOMAIN.log / .yml.
package testbed
