// Package resolvetest runs a small DNS server for tests: a zone held in
// memory, served over UDP and TCP on one loopback address with
// github.com/miekg/dns.
//
// The server behaves as an authoritative server for every name (and, so that
// stub resolvers such as libunbound accept it as a forwarder, also sets RA):
// names it holds records for are answered with the AA bit set and the
// question echoed; names with no records at all get NXDOMAIN, names that
// exist but hold no record of the asked type get NOERROR with no answer
// (NODATA). Negative answers carry an SOA record in the authority section
// whose minimum TTL is the server's TTL, so a resolver following RFC 2308
// caches them exactly as long as positive answers.
//
// Records are served with TTL 0 unless SetTTL says otherwise, so clients do
// not cache them and a test can change the zone at any time. Every method is
// safe for concurrent use.
package resolvetest
