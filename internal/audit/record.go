package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event names written by the gateway core and by the log itself.
const (
	EventSessionOpen  = "session.open"
	EventSessionAuth  = "session.auth"
	EventSessionClose = "session.close"
	EventStanza       = "stanza"
	// EventLogRecovered is written by Open after it cut a torn last line
	// (a crash in the middle of a write) away.
	EventLogRecovered = "log.recovered"
	// EventLogResumed is written by the log when writing works again after
	// a failure (disk full, permission).
	EventLogResumed = "log.resumed"
	// EventAdmin is an administrator's action on the admin API (or a
	// SIGHUP reload), and every refused attempt: Actor, Action, Target,
	// RemoteAddr, Decision and Reason say who did what to which session
	// and how it ended.
	EventAdmin = "admin"
	// EventCheckpoint is written periodically by a replicated backend
	// (internal/audit/jsaudit) on its node's chain: Heads lists every
	// node's chain head as the stream held it.
	EventCheckpoint = "audit.checkpoint"
	// EventAnchor is written by retention (Log.ApplyRetention) before it
	// deletes the oldest rotated files: AnchorSeq and AnchorPrev name the
	// first record kept and its prev (the hash of the last record
	// deleted), DeletedFiles the files, Reason the retention and the holds.
	// It is a link of the chain (HMAC-keyed when the log is), so Verify
	// accepts a series that starts where an anchor says and no other.
	EventAnchor = "audit.anchor"
)

// Decisions a record carries.
const (
	DecisionAllow     = "allow"      // the policy allowed it
	DecisionDeny      = "deny"       // the policy (or a check before it) refused it
	DecisionWouldDeny = "would-deny" // dry run: the policy would have refused it
	// DecisionBounced: refused before the policy (a malformed address, a
	// rate) or undeliverable, and answered with an error stanza.
	DecisionBounced = "bounced"
	// DecisionUndeliverable: not delivered and not answered (an error or
	// a result is never answered with an error).
	DecisionUndeliverable = "undeliverable"
)

// Record is one audit event: one line of the audit file. The JSON member
// names and their order are the schema documented in the package comment;
// empty members are left out, except seq, time, node, event, prev and hash.
type Record struct {
	Seq   uint64    `json:"seq"`   // set when chained (Log.Append returns it)
	Time  time.Time `json:"time"`  // set when chained: when Log.Append ran (UTC, nanoseconds)
	Node  string    `json:"node"`  // set when chained
	Event string    `json:"event"` // session.open | session.auth | session.close | stanza | admin | log.recovered | log.resumed

	Session   string `json:"session,omitempty"`   // session id
	Leg       string `json:"leg,omitempty"`       // inside | outside
	Direction string `json:"direction,omitempty"` // inbound | outbound

	LocalDomain  string `json:"local_domain,omitempty"`
	RemoteDomain string `json:"remote_domain,omitempty"`
	RemoteAddr   string `json:"remote_addr,omitempty"`
	TLSVersion   string `json:"tls_version,omitempty"`
	TLSCipher    string `json:"tls_cipher,omitempty"`
	Auth         string `json:"auth,omitempty"`      // sasl_external | dialback
	PeerCert     string `json:"peer_cert,omitempty"` // "valid" or why not

	From string `json:"from,omitempty"` // full JID, canonical
	To   string `json:"to,omitempty"`   // full JID, canonical
	// FromSent and ToSent are the JIDs as the peer wrote them, set only
	// when they differ from the canonical From and To.
	FromSent string `json:"from_sent,omitempty"`
	ToSent   string `json:"to_sent,omitempty"`
	Kind     string `json:"kind,omitempty"` // message | presence | iq
	Type     string `json:"type,omitempty"` // the stanza's type attribute
	ID       string `json:"id,omitempty"`   // the stanza's id attribute
	Size     int    `json:"size,omitempty"` // stanza bytes
	// Encryption names the end-to-end encryption the stanza carries
	// (e.g. "omemo", "openpgp", "otr"); empty: none seen.
	Encryption string `json:"encryption,omitempty"`
	// FileTransfer lists the file transfers the stanza offers, each as
	// "method" or "method:host", e.g. ["oob:upload.partner.test", "ibb"].
	FileTransfer Strings `json:"file_transfer,omitempty"`

	Decision string `json:"decision,omitempty"` // allow | deny | would-deny | bounced | undeliverable | error
	Reason   string `json:"reason,omitempty"`
	// Modified is true when the policy changed the stanza before relaying
	// it; Stripped lists the child elements it removed, each as
	// "{namespace}name".
	Modified       bool    `json:"modified,omitempty"`
	Stripped       Strings `json:"stripped,omitempty"`
	PolicyRevision string  `json:"policy_revision,omitempty"`
	BodySHA256     string  `json:"body_sha256,omitempty"` // policy audit: hash
	Stanza         string  `json:"stanza,omitempty"`      // policy audit: full

	// Set on admin: who acted ("bearer token", "client certificate
	// CN=…", "signal SIGHUP", or "unauthenticated" for a refused
	// attempt), what (sessions.list | session.close | reload) and on what
	// (the session id of session.close).
	Actor  string `json:"actor,omitempty"`
	Action string `json:"action,omitempty"`
	Target string `json:"target,omitempty"`

	// Set on log.recovered: where the torn bytes were, how many, their
	// SHA-256 (hex).
	DroppedOffset int64  `json:"dropped_offset,omitempty"`
	DroppedBytes  int64  `json:"dropped_bytes,omitempty"`
	DroppedSHA256 string `json:"dropped_sha256,omitempty"`

	// Set on audit.checkpoint: every node's chain head, each as
	// "<node> <seq> <hash>", in node order.
	Heads Strings `json:"heads,omitempty"`

	// Set on audit.anchor: the seq of the first record kept, its prev
	// (the hash of the last record deleted) and the base names of the
	// files deleted, oldest first.
	AnchorSeq    uint64  `json:"anchor_seq,omitempty"`
	AnchorPrev   string  `json:"anchor_prev,omitempty"`
	DeletedFiles Strings `json:"deleted_files,omitempty"`

	Prev string `json:"prev"` // set when chained (Log's writer, Chain.Next): the previous record's hash; "" starts a chain
	Hash string `json:"hash"` // set when chained
}

// recordOverhead is what sizeHint counts for the members of a line that
// are not the variable strings it adds: names, seq, time, the hashes.
const recordOverhead = 512

// sizeHint estimates r's encoded line (escaping aside) from its variable
// strings: it is what a record queued in a Log holds until the writer
// encodes it, and bounds that queue.
func (r *Record) sizeHint() int {
	return recordOverhead + len(r.Session) + len(r.RemoteAddr) + len(r.From) + len(r.To) +
		len(r.FromSent) + len(r.ToSent) + len(r.ID) + len(r.Reason) + len(r.Stanza) +
		len(r.FileTransfer) + len(r.Stripped) + len(r.Heads) + len(r.DeletedFiles)
}

// timeLayout is RFC 3339 with exactly nine fractional digits, so that a
// decoded time re-encodes to the same bytes and lines sort by time.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// appendBody appends the members between time and prev — from node to
// deleted_files — each with its leading comma. Members added to the
// schema go in their place here; records written before they existed stay
// valid, since the chain hashes each line's own bytes.
func appendBody(b []byte, r *Record) []byte {
	b = appendMember(b, `,"node":`, r.Node, true)
	b = appendMember(b, `,"event":`, r.Event, true)
	b = appendMember(b, `,"session":`, r.Session, false)
	b = appendMember(b, `,"leg":`, r.Leg, false)
	b = appendMember(b, `,"direction":`, r.Direction, false)
	b = appendMember(b, `,"local_domain":`, r.LocalDomain, false)
	b = appendMember(b, `,"remote_domain":`, r.RemoteDomain, false)
	b = appendMember(b, `,"remote_addr":`, r.RemoteAddr, false)
	b = appendMember(b, `,"tls_version":`, r.TLSVersion, false)
	b = appendMember(b, `,"tls_cipher":`, r.TLSCipher, false)
	b = appendMember(b, `,"auth":`, r.Auth, false)
	b = appendMember(b, `,"peer_cert":`, r.PeerCert, false)
	b = appendMember(b, `,"from":`, r.From, false)
	b = appendMember(b, `,"to":`, r.To, false)
	b = appendMember(b, `,"from_sent":`, r.FromSent, false)
	b = appendMember(b, `,"to_sent":`, r.ToSent, false)
	b = appendMember(b, `,"kind":`, r.Kind, false)
	b = appendMember(b, `,"type":`, r.Type, false)
	b = appendMember(b, `,"id":`, r.ID, false)
	if r.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, int64(r.Size), 10)
	}
	b = appendMember(b, `,"encryption":`, r.Encryption, false)
	b = appendStrings(b, `,"file_transfer":`, r.FileTransfer)
	b = appendMember(b, `,"decision":`, r.Decision, false)
	b = appendMember(b, `,"reason":`, r.Reason, false)
	if r.Modified {
		b = append(b, `,"modified":true`...)
	}
	b = appendStrings(b, `,"stripped":`, r.Stripped)
	b = appendMember(b, `,"policy_revision":`, r.PolicyRevision, false)
	b = appendMember(b, `,"body_sha256":`, r.BodySHA256, false)
	b = appendMember(b, `,"stanza":`, r.Stanza, false)
	b = appendMember(b, `,"actor":`, r.Actor, false)
	b = appendMember(b, `,"action":`, r.Action, false)
	b = appendMember(b, `,"target":`, r.Target, false)
	if r.DroppedOffset != 0 {
		b = append(b, `,"dropped_offset":`...)
		b = strconv.AppendInt(b, r.DroppedOffset, 10)
	}
	if r.DroppedBytes != 0 {
		b = append(b, `,"dropped_bytes":`...)
		b = strconv.AppendInt(b, r.DroppedBytes, 10)
	}
	b = appendMember(b, `,"dropped_sha256":`, r.DroppedSHA256, false)
	b = appendStrings(b, `,"heads":`, r.Heads)
	if r.AnchorSeq != 0 {
		b = append(b, `,"anchor_seq":`...)
		b = strconv.AppendUint(b, r.AnchorSeq, 10)
	}
	b = appendMember(b, `,"anchor_prev":`, r.AnchorPrev, false)
	b = appendStrings(b, `,"deleted_files":`, r.DeletedFiles)
	return b
}

func appendMember(b []byte, name, value string, always bool) []byte {
	if value == "" && !always {
		return b
	}
	b = append(b, name...)
	return appendJSONString(b, value)
}

// Strings is a list of strings held in one comparable value, so that a
// Record stays comparable with ==. It is written as a JSON array of
// strings; the zero value is the empty list, and an empty list is left out
// of the record. Make one with StringsOf and read it with Values.
//
// Each element is stored followed by a NUL byte, which XML (and therefore
// no JID, namespace or host name) cannot hold; a NUL given in an element
// is replaced by U+FFFD.
type Strings string

// StringsOf returns the list of values, in order.
func StringsOf(values ...string) Strings {
	var b strings.Builder
	for _, v := range values {
		b.WriteString(strings.ReplaceAll(v, "\x00", "\uFFFD"))
		b.WriteByte(0)
	}
	return Strings(b.String())
}

// Values returns the elements (nil for the empty list).
func (s Strings) Values() []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(s), "\x00"), "\x00")
}

// Len is the number of elements.
func (s Strings) Len() int { return strings.Count(string(s), "\x00") }

// MarshalJSON writes the list as a JSON array, with the escaping of the
// audit encoder.
func (s Strings) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("[]"), nil
	}
	return appendStringsArray(nil, s), nil
}

// UnmarshalJSON reads a JSON array of strings (or null, the empty list).
func (s *Strings) UnmarshalJSON(data []byte) error {
	var values []string
	if err := json.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("audit: a list member must be an array of strings: %w", err)
	}
	*s = StringsOf(values...)
	return nil
}

// appendStrings appends a member whose value is an array of strings, or
// nothing when the list is empty.
func appendStrings(b []byte, name string, values Strings) []byte {
	if values == "" {
		return b
	}
	b = append(b, name...)
	return appendStringsArray(b, values)
}

func appendStringsArray(b []byte, values Strings) []byte {
	b = append(b, '[')
	for i, v := range values.Values() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. It escapes only what JSON
// requires — '"', '\\' and control characters below 0x20 (as \n, \r, \t or
// \u00xx) — plus U+2028 and U+2029; invalid UTF-8 becomes U+FFFD written as
// its raw UTF-8 bytes. Everything else, '<', '>' and '&' included, is
// written as is. This makes the encoding a function of the decoded string:
// decoding a line with encoding/json and encoding it again gives the same
// bytes.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeLine appends the whole line of r (with r.Seq, r.Time, r.Prev as
// they are and the hash computed by c) and returns it; used by tests and
// tools. Log.Append builds the same bytes in place.
func encodeLine(b []byte, r *Record, c *chainHasher) []byte {
	start := len(b)
	b = appendHead(b, r.Seq, r.Time)
	b = appendBody(b, r)
	b = appendPrev(b, r.Prev)
	sum := c.sum([]byte(r.Prev), b[start:])
	b = append(b, `,"hash":"`...)
	b = append(b, sum[:]...)
	return append(b, '"', '}', '\n')
}

func appendHead(b []byte, seq uint64, t time.Time) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

func appendPrev(b []byte, prev string) []byte {
	b = append(b, `,"prev":"`...)
	b = append(b, prev...)
	return append(b, '"')
}

// lineParts are the pieces of a line the chain needs, found by position:
// the encoder always writes seq first and prev, hash last.
type lineParts struct {
	seq  uint64
	prev []byte // "" or 64 hex digits
	hash []byte // 64 hex digits
	// body is the line up to and without the hash member; the canonical
	// bytes are body + "}".
	body []byte
}

const (
	hashMemberPrefix = `,"hash":"`
	prevMemberPrefix = `,"prev":"`
	hashHexLen       = 64
)

var (
	errNotRecordLayout = errors.New("not an audit record: it must start with {\"seq\": and end with \"prev\" and \"hash\" members")
	errBadHashMember   = errors.New(`the "hash" member is not 64 lowercase hex digits`)
	errBadPrevMember   = errors.New(`the "prev" member is neither empty nor 64 lowercase hex digits`)
	errBadSeq          = errors.New(`the "seq" member is not a positive integer`)
)

// splitLine finds seq, prev, hash and the canonical body of one line
// (without its newline). It checks the layout only, not the hash.
func splitLine(line []byte) (lineParts, error) {
	var p lineParts
	// ... ,"hash":"<64 hex>"}
	tail := len(hashMemberPrefix) + hashHexLen + 2
	if len(line) < tail || !bytes.HasSuffix(line, []byte(`"}`)) {
		return p, errNotRecordLayout
	}
	hashStart := len(line) - 2 - hashHexLen
	if !bytes.Equal(line[hashStart-len(hashMemberPrefix):hashStart], []byte(hashMemberPrefix)) {
		return p, errNotRecordLayout
	}
	p.hash = line[hashStart : hashStart+hashHexLen]
	if !isLowerHex(p.hash) {
		return p, errBadHashMember
	}
	p.body = line[:hashStart-len(hashMemberPrefix)]
	// body ends with ,"prev":"" or ,"prev":"<64 hex>"
	switch {
	case bytes.HasSuffix(p.body, []byte(prevMemberPrefix+`"`)):
		p.prev = p.body[len(p.body)-1 : len(p.body)-1]
	case len(p.body) >= len(prevMemberPrefix)+hashHexLen+1 &&
		p.body[len(p.body)-1] == '"' &&
		bytes.Equal(p.body[len(p.body)-1-hashHexLen-len(prevMemberPrefix):len(p.body)-1-hashHexLen], []byte(prevMemberPrefix)):
		p.prev = p.body[len(p.body)-1-hashHexLen : len(p.body)-1]
		if !isLowerHex(p.prev) {
			return p, errBadPrevMember
		}
	default:
		return p, errNotRecordLayout
	}
	const seqPrefix = `{"seq":`
	if !bytes.HasPrefix(line, []byte(seqPrefix)) {
		return p, errNotRecordLayout
	}
	digits := line[len(seqPrefix):]
	n := 0
	for n < len(digits) && n < 21 && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	if n == 0 || n == len(digits) || digits[n] != ',' || digits[0] == '0' {
		return p, errBadSeq
	}
	seq, err := strconv.ParseUint(string(digits[:n]), 10, 64)
	if err != nil {
		return p, errBadSeq
	}
	p.seq = seq
	return p, nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
