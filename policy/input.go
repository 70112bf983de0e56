package policy

import (
	"encoding/binary"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A leaf is one scalar fact of an input document, known by its path. The
// leaves are the unit of the decision cache's key: a query's key is the
// values of the leaves its policy refers to (see analyze).
type leaf uint8

const (
	// session input (also under input.session of a stanza: sessionOffset+)
	lfDirection leaf = iota
	lfLocalDomain
	lfRemoteDomain
	lfRemoteIP
	lfTLSVersion
	lfTLSCipher
	lfTLSPeerCertValid
	lfTLSPeerCertIssuer
	lfTLSPeerCertError
	lfAuth
	lfNow
	lfRemote // what the data says of the remote domain (facet.go)
	sessionLeaves

	// stanza input
	lfStanzaDirection leaf = iota
	lfKind
	lfType
	lfID
	lfFromFull
	lfFromBare
	lfFromDomain
	lfToFull
	lfToBare
	lfToDomain
	lfStanzaRemote   // what the data says of the remote domain (facet.go)
	lfStanzaLocal    // what the data says of the local user (facet.go)
	lfChildren       // content
	lfBody           // content
	lfSubject        // content
	lfThread         // content
	lfSecurityLabel  // content (the whole label; absent when nil)
	lfEncryption     // content (payload fact)
	lfFileTransfer   // content (payload fact)
	lfBodyIsFallback // content (payload fact)
	lfSession        // presence of input.session
	lfSessionBase    // lfSessionBase + a session leaf: input.session.…
)

type leafPath struct {
	path []string
	leaf leaf
}

var sessionSchema = []leafPath{
	{[]string{"direction"}, lfDirection},
	{[]string{"local_domain"}, lfLocalDomain},
	{[]string{"remote_domain"}, lfRemoteDomain},
	{[]string{"remote_ip"}, lfRemoteIP},
	{[]string{"tls", "version"}, lfTLSVersion},
	{[]string{"tls", "cipher"}, lfTLSCipher},
	{[]string{"tls", "peer_cert_valid"}, lfTLSPeerCertValid},
	{[]string{"tls", "peer_cert_issuer"}, lfTLSPeerCertIssuer},
	{[]string{"tls", "peer_cert_error"}, lfTLSPeerCertError},
	{[]string{"auth"}, lfAuth},
	{[]string{"now"}, lfNow},
	{[]string{"remote"}, lfRemote},
}

var stanzaSchema = func() []leafPath {
	s := []leafPath{
		{[]string{"direction"}, lfStanzaDirection},
		{[]string{"kind"}, lfKind},
		{[]string{"type"}, lfType},
		{[]string{"id"}, lfID},
		{[]string{"from", "full"}, lfFromFull},
		{[]string{"from", "bare"}, lfFromBare},
		{[]string{"from", "domain"}, lfFromDomain},
		{[]string{"to", "full"}, lfToFull},
		{[]string{"to", "bare"}, lfToBare},
		{[]string{"to", "domain"}, lfToDomain},
		{[]string{"remote"}, lfStanzaRemote},
		{[]string{"local"}, lfStanzaLocal},
		{[]string{"children"}, lfChildren},
		{[]string{"body"}, lfBody},
		{[]string{"subject"}, lfSubject},
		{[]string{"thread"}, lfThread},
		{[]string{"security_label"}, lfSecurityLabel},
		{[]string{"encryption"}, lfEncryption},
		{[]string{"file_transfer"}, lfFileTransfer},
		{[]string{"body_is_fallback"}, lfBodyIsFallback},
		{[]string{"session"}, lfSession},
	}
	for _, l := range sessionSchema {
		s = append(s, leafPath{append([]string{"session"}, l.path...), lfSessionBase + l.leaf})
	}
	return s
}()

// isContentLeaf reports whether l is a content leaf: never part of the
// decision cache's key (a stanza whose referenced content is not empty
// is not answered from that cache).
func isContentLeaf(l leaf) bool { return l >= lfChildren && l <= lfBodyIsFallback }

// isPayloadFactLeaf reports whether l is a payload fact: what
// NeedsPayloadFacts asks the gateway to compute.
func isPayloadFactLeaf(l leaf) bool { return l >= lfEncryption && l <= lfBodyIsFallback }

// allContentLeaves are the content leaves, for a policy that reads the
// input as a whole.
var allContentLeaves = []leaf{lfChildren, lfBody, lfSubject, lfThread, lfSecurityLabel, lfEncryption, lfFileTransfer, lfBodyIsFallback}

// leavesFor returns the leaves of a schema that a set of referenced input
// paths can read: a leaf under a path, or a leaf that a path goes into.
func leavesFor(schema []leafPath, paths [][]string) []leaf {
	var out []leaf
	for _, lp := range schema {
		for _, p := range paths {
			n := min(len(p), len(lp.path))
			if slices.Equal(p[:n], lp.path[:n]) {
				out = append(out, lp.leaf)
				break
			}
		}
	}
	// Any session leaf makes the presence of the session part of the key.
	for _, l := range out {
		if l >= lfSessionBase && !slices.Contains(out, lfSession) {
			out = append(out, lfSession)
			break
		}
	}
	slices.Sort(out)
	return out
}

func appendString(key []byte, s string) []byte {
	key = binary.AppendUvarint(key, uint64(len(s)))
	return append(key, s...)
}

func appendBool(key []byte, b bool) []byte {
	if b {
		return append(key, 1)
	}
	return append(key, 0)
}

func appendSessionLeaf(key []byte, in *SessionInput, l leaf, partner remoteFacet) []byte {
	switch l {
	case lfDirection:
		return appendString(key, string(in.Direction))
	case lfLocalDomain:
		return appendString(key, in.LocalDomain)
	case lfRemoteDomain:
		return appendString(key, in.RemoteDomain)
	case lfRemoteIP:
		return appendString(key, in.RemoteIP)
	case lfTLSVersion:
		return appendString(key, in.TLS.Version)
	case lfTLSCipher:
		return appendString(key, in.TLS.Cipher)
	case lfTLSPeerCertValid:
		return appendBool(key, in.TLS.PeerCertValid)
	case lfTLSPeerCertIssuer:
		return appendString(key, in.TLS.PeerCertIssuer)
	case lfTLSPeerCertError:
		return appendString(key, in.TLS.PeerCertError)
	case lfAuth:
		return appendString(key, in.Auth)
	case lfNow:
		return appendString(key, in.Now)
	case lfRemote:
		return binary.AppendUvarint(key, uint64(partner.id))
	}
	return key
}

// appendStanzaLeaf appends a header leaf; content leaves are never keyed
// (a stanza whose referenced content is not empty is not cached).
func appendStanzaLeaf(key []byte, in *StanzaInput, l leaf, f *inputFacets) []byte {
	switch l {
	case lfStanzaDirection:
		return appendString(key, string(in.Direction))
	case lfKind:
		return appendString(key, in.Kind)
	case lfType:
		return appendString(key, in.Type)
	case lfID:
		return appendString(key, in.ID)
	case lfFromFull:
		return appendString(key, in.From.Full)
	case lfFromBare:
		return appendString(key, in.From.Bare)
	case lfFromDomain:
		return appendString(key, in.From.Domain)
	case lfToFull:
		return appendString(key, in.To.Full)
	case lfToBare:
		return appendString(key, in.To.Bare)
	case lfToDomain:
		return appendString(key, in.To.Domain)
	case lfStanzaRemote:
		return binary.AppendUvarint(key, uint64(f.remote.id))
	case lfStanzaLocal:
		return append(key, byte(f.local.id))
	case lfSession:
		return appendBool(key, in.Session != nil)
	}
	if l >= lfSessionBase && in.Session != nil {
		return appendSessionLeaf(key, in.Session, l-lfSessionBase, f.session)
	}
	return key
}

// contentEmpty reports whether the content leaf l of in is empty (so that
// its value is known without being part of the key).
func contentEmpty(in *StanzaInput, l leaf) bool {
	switch l {
	case lfChildren:
		return len(in.Children) == 0
	case lfBody:
		return in.Body == ""
	case lfSubject:
		return in.Subject == ""
	case lfThread:
		return in.Thread == ""
	case lfSecurityLabel:
		return in.SecurityLabel == nil
	case lfEncryption:
		return in.Encryption == ""
	case lfFileTransfer:
		return len(in.FileTransfer) == 0
	case lfBodyIsFallback:
		return !in.BodyIsFallback
	}
	return true
}

// Key terms of the input documents: immutable, shared by all engines.
var (
	kDirection      = ast.StringTerm("direction")
	kLocalDomain    = ast.StringTerm("local_domain")
	kRemoteDomain   = ast.StringTerm("remote_domain")
	kRemoteIP       = ast.StringTerm("remote_ip")
	kTLS            = ast.StringTerm("tls")
	kVersion        = ast.StringTerm("version")
	kCipher         = ast.StringTerm("cipher")
	kPeerCertValid  = ast.StringTerm("peer_cert_valid")
	kPeerCertIssuer = ast.StringTerm("peer_cert_issuer")
	kPeerCertError  = ast.StringTerm("peer_cert_error")
	kAuth           = ast.StringTerm("auth")
	kNow            = ast.StringTerm("now")
	kKind           = ast.StringTerm("kind")
	kType           = ast.StringTerm("type")
	kID             = ast.StringTerm("id")
	kFrom           = ast.StringTerm("from")
	kTo             = ast.StringTerm("to")
	kFull           = ast.StringTerm("full")
	kBare           = ast.StringTerm("bare")
	kDomain         = ast.StringTerm("domain")
	kChildren       = ast.StringTerm("children")
	kName           = ast.StringTerm("name")
	kNamespace      = ast.StringTerm("namespace")
	kBody           = ast.StringTerm("body")
	kSubject        = ast.StringTerm("subject")
	kThread         = ast.StringTerm("thread")
	kSecurityLabel  = ast.StringTerm("security_label")
	kMarking        = ast.StringTerm("marking")
	kFgColor        = ast.StringTerm("fgcolor")
	kBgColor        = ast.StringTerm("bgcolor")
	kLabel          = ast.StringTerm("label")
	kSession        = ast.StringTerm("session")
	kEncryption     = ast.StringTerm("encryption")
	kFileTransfer   = ast.StringTerm("file_transfer")
	kMethod         = ast.StringTerm("method")
	kHost           = ast.StringTerm("host")
	kBodyIsFallback = ast.StringTerm("body_is_fallback")
	kRemote         = ast.StringTerm("remote")
	kLocal          = ast.StringTerm("local")
)

func str(s string) *ast.Term {
	if s == "" {
		return ast.InternedEmptyString
	}
	return ast.StringTerm(s)
}

// sessionValue builds the session input document. Top-level fields not
// in need (a bit per field, see sessionFieldBits) are left out: the
// policy never reads them. partner is the remote domain's facet (the
// caller looks it up when need has remote).
func sessionValue(in *SessionInput, need uint32, partner remoteFacet) ast.Value {
	pairs := make([][2]*ast.Term, 0, 8)
	if need&(1<<0) != 0 {
		pairs = append(pairs, [2]*ast.Term{kDirection, str(string(in.Direction))})
	}
	if need&(1<<1) != 0 {
		pairs = append(pairs, [2]*ast.Term{kLocalDomain, str(in.LocalDomain)})
	}
	if need&(1<<2) != 0 {
		pairs = append(pairs, [2]*ast.Term{kRemoteDomain, str(in.RemoteDomain)})
	}
	if need&(1<<3) != 0 {
		pairs = append(pairs, [2]*ast.Term{kRemoteIP, str(in.RemoteIP)})
	}
	if need&(1<<4) != 0 {
		pairs = append(pairs, [2]*ast.Term{kTLS, ast.NewTerm(ast.NewObject(
			[2]*ast.Term{kVersion, str(in.TLS.Version)},
			[2]*ast.Term{kCipher, str(in.TLS.Cipher)},
			[2]*ast.Term{kPeerCertValid, ast.InternedTerm(in.TLS.PeerCertValid)},
			[2]*ast.Term{kPeerCertIssuer, str(in.TLS.PeerCertIssuer)},
			[2]*ast.Term{kPeerCertError, str(in.TLS.PeerCertError)},
		))})
	}
	if need&(1<<5) != 0 {
		pairs = append(pairs, [2]*ast.Term{kAuth, str(in.Auth)})
	}
	if need&(1<<6) != 0 {
		pairs = append(pairs, [2]*ast.Term{kNow, str(in.Now)})
	}
	if need&(1<<7) != 0 {
		pairs = append(pairs, [2]*ast.Term{kRemote, partner.value()})
	}
	return ast.NewObject(pairs...)
}

// sessionFieldBits maps a top-level session input key to its bit.
var sessionFieldBits = map[string]uint32{
	"direction": 1 << 0, "local_domain": 1 << 1, "remote_domain": 1 << 2,
	"remote_ip": 1 << 3, "tls": 1 << 4, "auth": 1 << 5, "now": 1 << 6,
	"remote": 1 << 7,
}

// The remote bits of sessionFieldBits and stanzaFieldBits.
const (
	sessionRemoteBit = 1 << 7
	stanzaRemoteBit  = 1 << 15
	stanzaLocalBit   = 1 << 16
	stanzaSessionBit = 1 << 11 // input.session
)

var stanzaFieldBits = map[string]uint32{
	"direction": 1 << 0, "kind": 1 << 1, "type": 1 << 2, "id": 1 << 3,
	"from": 1 << 4, "to": 1 << 5, "children": 1 << 6, "body": 1 << 7,
	"subject": 1 << 8, "thread": 1 << 9, "security_label": 1 << 10, "session": 1 << 11,
	"encryption": 1 << 12, "file_transfer": 1 << 13, "body_is_fallback": 1 << 14,
	"remote": 1 << 15, "local": 1 << 16,
}

const allFields = ^uint32(0)

func jidValue(j *JID) *ast.Term {
	return ast.NewTerm(ast.NewObject(
		[2]*ast.Term{kFull, str(j.Full)},
		[2]*ast.Term{kBare, str(j.Bare)},
		[2]*ast.Term{kDomain, str(j.Domain)},
	))
}

// stanzaValue builds the stanza input document (see sessionValue).
func stanzaValue(in *StanzaInput, need uint32, f *inputFacets) ast.Value {
	pairs := make([][2]*ast.Term, 0, 17)
	if need&(1<<0) != 0 {
		pairs = append(pairs, [2]*ast.Term{kDirection, str(string(in.Direction))})
	}
	if need&(1<<1) != 0 {
		pairs = append(pairs, [2]*ast.Term{kKind, str(in.Kind)})
	}
	if need&(1<<2) != 0 {
		pairs = append(pairs, [2]*ast.Term{kType, str(in.Type)})
	}
	if need&(1<<3) != 0 {
		pairs = append(pairs, [2]*ast.Term{kID, str(in.ID)})
	}
	if need&(1<<4) != 0 {
		pairs = append(pairs, [2]*ast.Term{kFrom, jidValue(&in.From)})
	}
	if need&(1<<5) != 0 {
		pairs = append(pairs, [2]*ast.Term{kTo, jidValue(&in.To)})
	}
	if need&(1<<6) != 0 {
		children := make([]*ast.Term, len(in.Children))
		for i, c := range in.Children {
			children[i] = ast.NewTerm(ast.NewObject(
				[2]*ast.Term{kName, str(c.Name)},
				[2]*ast.Term{kNamespace, str(c.Namespace)},
			))
		}
		pairs = append(pairs, [2]*ast.Term{kChildren, ast.ArrayTerm(children...)})
	}
	if need&(1<<7) != 0 {
		pairs = append(pairs, [2]*ast.Term{kBody, str(in.Body)})
	}
	if need&(1<<8) != 0 {
		pairs = append(pairs, [2]*ast.Term{kSubject, str(in.Subject)})
	}
	if need&(1<<9) != 0 {
		pairs = append(pairs, [2]*ast.Term{kThread, str(in.Thread)})
	}
	if need&(1<<10) != 0 && in.SecurityLabel != nil {
		l := in.SecurityLabel
		pairs = append(pairs, [2]*ast.Term{kSecurityLabel, ast.NewTerm(ast.NewObject(
			[2]*ast.Term{kMarking, str(l.Marking)},
			[2]*ast.Term{kFgColor, str(l.FgColor)},
			[2]*ast.Term{kBgColor, str(l.BgColor)},
			[2]*ast.Term{kLabel, str(l.Label)},
		))})
	}
	if need&(1<<11) != 0 && in.Session != nil {
		pairs = append(pairs, [2]*ast.Term{kSession, ast.NewTerm(sessionValue(in.Session, allFields, f.session))})
	}
	if need&(1<<12) != 0 {
		pairs = append(pairs, [2]*ast.Term{kEncryption, str(in.Encryption)})
	}
	if need&(1<<13) != 0 {
		transfers := make([]*ast.Term, len(in.FileTransfer))
		for i, f := range in.FileTransfer {
			transfers[i] = ast.NewTerm(ast.NewObject(
				[2]*ast.Term{kMethod, str(f.Method)},
				[2]*ast.Term{kHost, str(f.Host)},
			))
		}
		pairs = append(pairs, [2]*ast.Term{kFileTransfer, ast.ArrayTerm(transfers...)})
	}
	if need&(1<<14) != 0 {
		pairs = append(pairs, [2]*ast.Term{kBodyIsFallback, ast.InternedTerm(in.BodyIsFallback)})
	}
	if need&(1<<15) != 0 {
		pairs = append(pairs, [2]*ast.Term{kRemote, f.remote.value()})
	}
	if need&(1<<16) != 0 && f.local.term != nil { // absent: the data's user lists are not offered
		pairs = append(pairs, [2]*ast.Term{kLocal, f.local.term})
	}
	return ast.NewObject(pairs...)
}
