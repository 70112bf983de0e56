package replay

import (
	"fmt"
	"net"
	"strings"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/payload"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// The decision inputs rebuilt from records: the inverse of the relay's
// records (edge/records.go) and of its session facts (the inside leg's
// pairs are outbound with the domains only; the outside leg's carry the
// remote IP, TLS and authentication).

// legOutside is the record's leg of the outside (Internet) side.
const legOutside = "outside"

// sessionInput is the session decision's input of a session.auth record.
// The peer certificate's issuer is not recorded: it stays empty. The
// decision's time (input.now, against which partner agreements expire)
// is the record's: the candidate decides as it would have then.
func sessionInput(r *audit.Record) *policy.SessionInput {
	in := &policy.SessionInput{
		Direction: policy.Direction(r.Direction), LocalDomain: r.LocalDomain, RemoteDomain: r.RemoteDomain,
		Auth: r.Auth, Now: policy.NowInput(r.Time),
	}
	if r.Leg == legOutside {
		in.RemoteIP = hostOf(r.RemoteAddr)
	}
	in.TLS.Version, in.TLS.Cipher = r.TLSVersion, r.TLSCipher
	switch r.PeerCert {
	case "":
	case "valid":
		in.TLS.PeerCertValid = true
	default:
		in.TLS.PeerCertError = r.PeerCert
	}
	return in
}

// hostOf is the IP of a recorded remote address ("ip:port"), as the relay
// gave it to the policy.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// certificateKnown reports whether the relay knew the remote's certificate
// when it decided the session (an authenticated remote; an outbound pair
// of the inside leg is decided before the outside is connected).
func certificateKnown(in *policy.SessionInput) bool { return in.Auth != "" }

// streamNamespaces are the namespaces a recorded stanza is read under: an
// s2s stream header's.
var streamNamespaces = map[string]string{
	"": xmlstream.NSServer, "stream": xmlstream.NSStream, "db": xmlstream.NSDialback,
}

// stanzaInput is the stanza decision's input of a stanza record, with the
// session facts of its stream when known (nil otherwise). content reports
// whether the record held the stanza and it could be read: without it the
// input has the metadata and the payload facts the record names.
func stanzaInput(r *audit.Record, session *policy.SessionInput) (in *policy.StanzaInput, content bool, err error) {
	from, err := recordJID(r.From, "from")
	if err != nil {
		return nil, false, err
	}
	to, err := recordJID(r.To, "to")
	if err != nil {
		return nil, false, err
	}
	in = &policy.StanzaInput{
		Direction: policy.Direction(r.Direction), Kind: r.Kind, Type: r.Type, ID: r.ID,
		From: from, To: to, Session: session,
	}
	if r.Stanza != "" && fillFromStanza(in, []byte(r.Stanza)) {
		return in, true, nil
	}
	fillFromMetadata(in, r)
	return in, false, nil
}

// recordJID reads a recorded (canonical) JID into the policy's form.
func recordJID(s, field string) (policy.JID, error) {
	j, err := jid.Prepare(s)
	if err != nil {
		return policy.JID{}, fmt.Errorf("the %s address %q is not a JID: %w", field, s, err)
	}
	return policy.JIDOf(j, j.String()), nil
}

// fillFromStanza fills the content and the payload facts from the
// recorded stanza, as the relay's policy stage does. It reports false
// (and fills nothing) when the stanza cannot be parsed.
func fillFromStanza(in *policy.StanzaInput, raw []byte) bool {
	tree, err := xmlstream.ParseNode(raw, streamNamespaces)
	if err != nil {
		return false
	}
	treeOf := func() (*xmlstream.Node, error) { return tree, nil }
	children := policy.FillContent(in, raw, streamNamespaces, treeOf, nil)
	if payload.Interesting(children, in.Body) {
		in.SetPayloadFacts(payload.Classify(tree, in.Body))
	}
	return true
}

// fillFromMetadata sets the payload facts a metadata record keeps:
// encryption and file transfers ("method" or "method:host").
func fillFromMetadata(in *policy.StanzaInput, r *audit.Record) {
	in.Encryption = r.Encryption
	for _, ft := range r.FileTransfer.Values() {
		method, host, _ := strings.Cut(ft, ":")
		in.FileTransfer = append(in.FileTransfer, policy.FileTransfer{Method: method, Host: host})
	}
}
