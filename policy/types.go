package policy

import (
	"context"
	"log/slog"
	"time"
)

// TLSInfo is what the gateway knows about the TLS layer of a stream
// (the outside leg's, for both directions).
type TLSInfo struct {
	Version        string `json:"version"` // "TLS 1.3", "" when not encrypted
	Cipher         string `json:"cipher"`
	PeerCertValid  bool   `json:"peer_cert_valid"`
	PeerCertIssuer string `json:"peer_cert_issuer"`
	PeerCertError  string `json:"peer_cert_error"` // why not valid ("" when valid)
}

// Direction says which way a session or stanza goes, seen from the
// company: Inbound (remote → local) or Outbound (local → remote).
type Direction string

// The directions.
const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// SessionInput is the input of the session decision. Its JSON form (the
// tags) is exactly the Rego input document.
type SessionInput struct {
	Direction    Direction `json:"direction"` // Inbound (remote → local) | Outbound (local → remote)
	LocalDomain  string    `json:"local_domain"`
	RemoteDomain string    `json:"remote_domain"`
	RemoteIP     string    `json:"remote_ip"`
	TLS          TLSInfo   `json:"tls"`
	Auth         string    `json:"auth"` // "sasl_external" | "dialback" | "" (outbound, before authentication)
	// Now is the time of the decision, RFC 3339 in UTC to the minute
	// (NowInput): partner agreements expire against it. To the minute so
	// that the decision cache keeps its use (one key per minute, not per
	// call). "" when unknown: a partner with an agreement is then refused.
	Now string `json:"now"`
}

// SessionDecision is the result of the session decision.
type SessionDecision struct {
	Allow   bool     `json:"allow"`
	Reason  string   `json:"reason,omitempty"`
	Require []string `json:"require,omitempty"` // e.g. ["certificate"]: the session must be authenticated by certificate
	// Rate limits the stanzas of the remote domain (a token bucket per
	// remote domain); nil means no limit. Only on an allowed session.
	// Shared with the decision cache: read it, never modify it.
	Rate      *Rate  `json:"rate,omitempty"`
	WouldDeny bool   `json:"would_deny,omitempty"` // dry-run: the policy denied (or failed), but the mode let it pass
	Revision  string `json:"revision"`
	Cached    bool   `json:"cached,omitempty"` // came from the decision cache
}

// Rate is a token bucket: PerSecond stanzas a second on average, bursts
// of up to Burst. Decision: {"per_second": 20, "burst": 50}; PerSecond
// is a positive number, Burst a positive integer.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// JID is an XMPP address in its three forms. Input: {"full":…, "bare":…, "domain":…}.
type JID struct {
	Full   string `json:"full"`
	Bare   string `json:"bare"`
	Domain string `json:"domain"`
}

// Child is a child element of a stanza: its local name and namespace.
type Child struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// SecurityLabel is a XEP-0258 security label: the displaymarking text and
// colours, and the raw inner XML of <label/>.
type SecurityLabel struct {
	Marking string `json:"marking"`
	FgColor string `json:"fgcolor"`
	BgColor string `json:"bgcolor"`
	Label   string `json:"label"`
}

// StanzaInput is the input of the stanza decision. Its JSON form (the
// tags) is exactly the Rego input document; security_label and session
// are absent from the input when nil.
type StanzaInput struct {
	Direction     Direction      `json:"direction"`
	Kind          string         `json:"kind"` // message | presence | iq
	Type          string         `json:"type"`
	ID            string         `json:"id"`
	From          JID            `json:"from"`
	To            JID            `json:"to"`
	Children      []Child        `json:"children"`
	Body          string         `json:"body"`
	Subject       string         `json:"subject"`
	Thread        string         `json:"thread"`
	SecurityLabel *SecurityLabel `json:"security_label,omitempty"`
	Session       *SessionInput  `json:"session,omitempty"` // the facts of the stream it arrived on

	// Payload facts: filled by the gateway only when NeedsPayloadFacts
	// reports that a loaded rule reads them (see the package
	// documentation, "Payload facts").

	// Encryption names the end-to-end encryption the stanza carries: one
	// of the Encryption… constants, "xep0380:" + a namespace, or "".
	Encryption string `json:"encryption"`
	// FileTransfer lists the ways the stanza moves a file (several for a
	// Jingle offer with a SOCKS5 or IBB transport); empty when none.
	FileTransfer []FileTransfer `json:"file_transfer"`
	// BodyIsFallback is true when the body is only a fallback text for an
	// encrypted payload, a XEP-0428 fallback, or an OOB link (the body is
	// the URL). The sender chooses the body: never skip a content check
	// because of it.
	BodyIsFallback bool `json:"body_is_fallback"`
}

// FileTransfer is one way a stanza moves a file. Input:
// {"method": "oob"|"jingle"|"ibb"|"socks5", "host": "upload.example"}.
type FileTransfer struct {
	Method string `json:"method"` // one of the Transfer… constants
	Host   string `json:"host"`   // oob: the URL's host, lower-case A-labels; "" for the others
}

// Values of StanzaInput.Encryption.
const (
	EncryptionNone    = ""
	EncryptionOMEMO   = "omemo"   // XEP-0384 before 0.4: <encrypted xmlns='eu.siacs.conversations.axolotl'/>
	EncryptionOMEMO2  = "omemo2"  // XEP-0384 0.4 and later: urn:xmpp:omemo:2
	EncryptionOpenPGP = "openpgp" // XEP-0373/0374 <openpgp xmlns='urn:xmpp:openpgp:0'/>, or XEP-0027 jabber:x:encrypted
	EncryptionOTR     = "otr"     // Off-the-Record: the body starts with "?OTR"
	// EncryptionXEP0380Prefix prefixes the namespace of a XEP-0380
	// <encryption xmlns='urn:xmpp:eme:0' namespace='…'/> tag that names
	// none of the above: "xep0380:" + namespace.
	EncryptionXEP0380Prefix = "xep0380:"
)

// Values of FileTransfer.Method.
const (
	TransferOOB    = "oob"    // XEP-0066 out-of-band URL (XEP-0363 HTTP upload links)
	TransferJingle = "jingle" // XEP-0234 Jingle file transfer (urn:xmpp:jingle:1 with a file-transfer description)
	TransferIBB    = "ibb"    // XEP-0047 in-band bytestreams, also as a Jingle transport (XEP-0261)
	TransferSOCKS5 = "socks5" // XEP-0065 SOCKS5 bytestreams, also as a Jingle transport (XEP-0260)
)

// StanzaDecision is the result of the stanza decision.
type StanzaDecision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"` // stanza error condition for the bounce; default "policy-violation"
	Audit  string `json:"audit"`           // "none" | "meta" | "hash" | "full" (default "meta")
	// Strip lists the children (direct children of the stanza, matched by
	// local name and namespace) to remove before the stanza is forwarded.
	// Only on an allowed stanza: a deny (also a dry-run would-deny) has
	// none. Shared with the decision cache: read it, never modify it.
	Strip     []Child `json:"strip,omitempty"`
	WouldDeny bool    `json:"would_deny,omitempty"`
	Revision  string  `json:"revision"`
	Cached    bool    `json:"cached,omitempty"` // came from the decision cache
}

// Modes of an Engine.
const (
	ModeEnforce = "enforce"
	ModeDryRun  = "dry-run"
)

// Audit levels of a stanza decision.
const (
	AuditNone = "none"
	AuditMeta = "meta"
	AuditHash = "hash"
	AuditFull = "full"
)

// DefaultStanzaError is the stanza error condition of a deny that names none.
const DefaultStanzaError = "policy-violation"

// Defaults of Config and BundleConfig.
const (
	DefaultTimeout    = 50 * time.Millisecond
	DefaultBundlePoll = 60 * time.Second
	// DefaultCacheSize bounds the decision cache (per decision kind); the
	// cache is emptied when it is full.
	DefaultCacheSize = 100_000
)

// Config says where the policy comes from and how it is applied.
type Config struct {
	// Rules is a directory of .rego files (read recursively; *_test.rego
	// files are left out of the engine) …
	Rules string
	// … plus data files (JSON or YAML), each an object whose keys are
	// merged under data.xmppedge (partners.yaml's "partners" list →
	// data.xmppedge.partners).
	Data []string
	// Bundle is an OPA bundle from a bundle server, instead of Rules/Data.
	Bundle *BundleConfig
	// Timeout bounds one evaluation; default 50ms.
	Timeout time.Duration
	// Mode is "enforce" (default) or "dry-run".
	Mode string
	// Logger receives warnings (failures) and, in dry-run, would-deny
	// notes. Default: discard.
	Logger *slog.Logger
	// CacheSize bounds each decision cache; 0 means DefaultCacheSize, a
	// negative value disables caching.
	CacheSize int
	// SampleFile keeps the warm-up samples across restarts (warmfile.go):
	// New decides the samples it holds before the first load is active,
	// SaveSamples writes the active policy's. They hold addresses, ids,
	// stanza kinds and payload facts, never message text. "" (default):
	// none; a start begins with cold caches.
	SampleFile string
	// WarmBudget bounds the warm-up of a reload, and of the first load
	// from SampleFile: the newest samples first, until it is spent (the
	// rest of the classes are learnt from traffic). 0 means 3s.
	WarmBudget time.Duration
}

// BundleConfig names an OPA bundle served over HTTP(S).
type BundleConfig struct {
	// URL of the bundle (OPA's bundle format: a .tar.gz with .rego files,
	// data.json, .manifest and optionally .signatures.json).
	URL string
	// Poll is the interval between downloads; default 60s. The download is
	// conditional (ETag), so an unchanged bundle costs one request.
	Poll time.Duration
	// PublicKey is a PEM file (RSA or ECDSA public key, or a certificate).
	// When set, bundles must be signed with the matching private key
	// (OPA's bundle signing) or they are rejected.
	PublicKey string
}

// Stats are the engine's counters since New.
type Stats struct {
	Decisions      uint64 // session and stanza decisions made
	CacheHits      uint64 // of which answered from the decision cache or a content program's memo
	Failures       uint64 // evaluation errors, timeouts, undefined or malformed decisions
	Reloads        uint64 // successful reloads (not counting the first load)
	ReloadFailures uint64 // reloads rejected (the old policy stayed active)
	// ContentPrograms counts the content programs built (one partial
	// evaluation each; see the package documentation), compiled or not.
	ContentPrograms uint64
	// KeyNarrowings counts the partial evaluations that narrowed a class
	// of decision keys (see the package documentation).
	KeyNarrowings uint64
	// WarmedClasses counts the sample inputs the reloads decided with the
	// new policy before making it active (the key classes the old one
	// had learnt; see the package documentation, Reload).
	WarmedClasses uint64
}

// Decider is what those who ask a policy for decisions need of it: the relay
// (edge.Policy) and a replay of recorded traffic (internal/replay).
// *Engine implements it.
//
// An input is the caller's: the relay reuses it once the call has
// returned, so a Decider copies what it keeps of it.
type Decider interface {
	DecideSession(ctx context.Context, in *SessionInput) SessionDecision
	DecideStanza(ctx context.Context, in *StanzaInput) StanzaDecision
	// NeedsContent reports whether the policy reads the stanza's content
	// (body, subject, thread, children, security label); NeedsPayloadFacts
	// whether it reads what the content scanner finds that rules cannot
	// read (encryption, file transfers, fallback bodies). A caller parses
	// (or, replaying, misses) only what is read.
	NeedsContent() bool
	NeedsPayloadFacts() bool
}
