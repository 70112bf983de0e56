// Package certstest makes certificates for tests: a throw-away CA
// (NewCA) that issues leaf certificates carrying the XMPP server
// identities (CA.Issue: DNS-IDs, SRV-IDs and XmppAddrs), and WriteFiles
// to put them where a server such as Prosody can read them.
//
// Keys are ECDSA P-256, which Go, OpenSSL and therefore Prosody accept.
// Leaves are usable for both TLS server and client authentication by
// default, as s2s needs: the initiating server presents its certificate as
// a client certificate. Nothing here is fit for production use.
package certstest
