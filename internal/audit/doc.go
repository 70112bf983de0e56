// Package audit is xmppedge's audit log: a tamper-evident, durable record
// of every cross-organisation session and stanza, in JSON Lines files,
// with a verifier and readers for the operator's questions.
//
// # Model
//
// The relay writes through the [Sink] interface; [Log] is its local-file
// implementation; internal/audit/jsaudit is the replicated one (a NATS
// JetStream stream), which encodes and chains records with [Chain], so
// that its lines are byte for byte what Log writes. For each event the relay calls
// [Log.Append], which gives the record its seq and queues it without
// waiting for the disk (a lock and an append: under a microsecond), and
// in sync mode then [Log.WaitDurable] before it relays the stanza.
//
// One writer goroutine encodes the queued records, chains them (each
// hash covers the previous one, so this is sequential anyway) and does
// all I/O (group commit): the relay's reader does not pay for encoding
// and hashing. The first record to
// reach an idle writer opens a batch; the batch is written with one
// write() and one fsync at once (or, with Config.CommitInterval set, once
// that much time, at most 2 ms, has passed since that record), and in any
// case when it holds 4096 records or 4 MiB. Records that arrive while a
// batch is being written and fsynced form the next batch, which goes as
// soon as the fsync ends: under load the commits group by themselves,
// and a single message waits for one fsync, not for a timer. After the fsync the writer stores the batch's last
// seq as the durable seq and closes a channel that every WaitDurable of
// that moment is blocked on: one wake-up for the whole batch. In async
// mode records are written the same way, fsynced within AsyncBound/2 of
// their Append (or when 16 MiB are unsynced), and WaitDurable does not
// wait.
//
// # Failure: fail closed
//
// When write(), fsync or re-opening fails (disk full, permission), the log
// is failed: [Log.Healthy] returns the error, [Log.Append] refuses
// records at once (the relay must not relay what it cannot record; the
// errors wrap [ErrUnavailable]), and every WaitDurable for a record not
// yet durable returns the error. The failed batch is kept. Every second
// the writer re-opens the current file, cuts off whatever was written
// after the last successful fsync (a failed write may leave part of a
// line; after a failed fsync the kernel may have dropped the pages), writes
// the kept batch again and fsyncs. When that works the log is healthy
// again, and a log.resumed record says how long writing failed and which
// records were written late (their sync-mode waiters were told of the
// failure, so their stanzas were not relayed; the record states the
// decision, not the delivery). The chain is unbroken. Append also refuses
// while 64 MiB of records wait for a disk that is slower than they come.
//
// # Files
//
// The current file is Config.Path, e.g. /var/lib/xmppedge/audit.jsonl.
// Rotation (Config.RotateSize, Config.RotateAge) happens at a batch
// boundary once everything in the file is fsynced: the file is renamed to
//
//	PATH.<UTC time of rotation, YYYYMMDDTHHMMSSZ>.<seq of its first record, 20 digits>
//	e.g. audit.jsonl.20260315T102030Z.00000000000000000001
//
// the folder is fsynced and a new current file is started, so a file may
// pass RotateSize by up to one batch. The zero-padded first seq makes a
// shell glob (audit.jsonl.*) list the rotated files in chain order;
// [RotatedFiles] and [SeriesFiles] order them by that seq, not by time,
// which a clock step could disorder. The chain goes on across files: the
// first record of a new file has prev = the last hash of the previous one.
// An exclusive flock on the current file keeps a second process from
// writing the same chain.
//
// # Recovery after a crash
//
// [Open] reads the end of the current file. The chain continues from its
// last complete (newline-terminated) record, which must be a record whose
// hash matches its content; if the current file holds no complete record,
// from the last record of the newest rotated file; else a new chain
// starts (prev ""). Bytes after the last newline are a torn line (a crash
// in the middle of a write): Open saves them to PATH-torn-<UTC time>
// (deliberately not matching PATH.*), cuts them off the file, logs an
// error and appends a log.recovered record naming the byte offset, length
// and SHA-256 of the dropped bytes; it never continues silently. In sync
// mode the dropped bytes cannot belong to a record whose stanza was
// relayed, since those were fsynced. If the last complete line is not a
// valid record (edited, written with another HMAC key, another file), Open
// refuses with an error that says so and what to do.
//
// The log.recovered record is an ordinary link of the chain: its prev is
// the hash of the last complete record, so [Verify] passes over a
// recovered file and counts the recoveries (VerifyResult.Recoveries).
//
// # Record schema
//
// One JSON object per line, members in this order; members marked
// "omitted when empty" are left out when "" or 0 (arrays: when they have
// no element; modified: when false):
//
//	seq             number  1, 2, 3 …: strictly increasing by 1 along the chain, across files and restarts
//	time            string  when Append ran: RFC 3339 UTC with exactly nine fractional digits, 2026-03-15T10:20:30.123456789Z
//	node            string  the node that wrote it (Config.Node, default the host name)
//	event           string  session.open | session.auth | session.close | stanza | admin | log.recovered | log.resumed | audit.checkpoint | audit.anchor
//	session         string  session id (omitted when empty, like all below)
//	leg             string  inside | outside
//	direction       string  inbound (partner → company) | outbound (company → partner)
//	local_domain    string  our domain of the stream
//	remote_domain   string  the partner's domain
//	remote_addr     string  the peer's IP:port; admin: the administrator's IP:port
//	tls_version     string  e.g. "TLS 1.3"
//	tls_cipher      string  e.g. "TLS_AES_128_GCM_SHA256"
//	auth            string  sasl_external | dialback
//	peer_cert       string  "valid", or why the peer's certificate is not
//	from            string  stanza: the full sender JID, canonical (as xmppedge normalised it)
//	to              string  stanza: the full recipient JID, canonical
//	from_sent       string  stanza: the sender JID exactly as the peer sent it; only when it differs from from
//	to_sent         string  stanza: the recipient JID exactly as the peer sent it; only when it differs from to
//	kind            string  stanza: message | presence | iq
//	type            string  stanza: its type attribute
//	id              string  stanza: its id attribute
//	size            number  stanza: its size in bytes
//	encryption      string  stanza: the end-to-end encryption it carries, e.g. "omemo", "openpgp", "otr"
//	file_transfer   array   stanza: the file transfers it offers, strings "method" or "method:host",
//	                        e.g. ["oob:upload.partner.test","ibb"]
//	decision        string  allow | deny | would-deny (dry run) | bounced | undeliverable | error;
//	                        admin: allow (done) | deny (refused: not authenticated) | error (failed)
//	reason          string  why: the policy's reason, the bounce condition, the close reason;
//	                        session.open: why an outgoing stream authenticated by dialback after
//	                        the server refused our certificate (SASL EXTERNAL or TLS);
//	                        session.auth (allow) of a dialback pair whose certificate settled it
//	                        without db:verify (XEP-0344): "XEP-0344: the certificate is valid
//	                        for <remote_domain>, dialback answered without db:verify", then
//	                        "; " and the policy's reason if it gave one; when DNSSEC-authenticated
//	                        TLSA records settled it (tls.dane), a second session.auth (allow)
//	                        after the policy's: "XEP-0344: the certificate matches the
//	                        DNSSEC-authenticated TLSA records (DANE) of <remote_domain>'s servers,
//	                        dialback answered without db:verify";
//	                        admin: why refused or why it failed
//	modified        bool    stanza: true when the policy changed it before relaying (only written when true)
//	stripped        array   stanza: the child elements the policy removed, strings "{namespace}name",
//	                        e.g. ["{urn:xmpp:jingle:1}jingle"]
//	policy_revision string  the policy revision that decided
//	body_sha256     string  policy audit "hash": hex SHA-256 of the body
//	stanza          string  policy audit "full": the whole stanza as relayed
//	actor           string  admin: who acted: "bearer token", "client certificate <subject DN>",
//	                        "signal SIGHUP", or "unauthenticated" for a refused attempt
//	action          string  admin: sessions.list | session.close | reload
//	target          string  admin: the session id of session.close
//	dropped_offset  number  log.recovered: the byte offset of the torn line in the current file
//	dropped_bytes   number  log.recovered: how many bytes were cut off
//	dropped_sha256  string  log.recovered: hex SHA-256 of those bytes
//	heads           array   audit.checkpoint: every node's chain head in the replicated log,
//	                        strings "<node> <seq> <hash>", e.g. ["edge-1 812 9f3c…","edge-2 77 01ab…"]
//	anchor_seq      number  audit.anchor: the seq of the first record kept by retention
//	anchor_prev     string  audit.anchor: that record's prev, the hash of the last record deleted
//	deleted_files   array   audit.anchor: the base names of the files deleted, oldest first
//	prev            string  the previous record's hash (64 hex digits); "" only for the first record of a chain
//	hash            string  this record's hash (64 hex digits); always the last member
//
// Members are only ever added to the schema, in a fixed place in this
// order: a record written before a member existed has the same bytes, and
// verifies, as before. Arrays are written without spaces: ["a","b"].
//
// Strings are JSON-escaped minimally: '"', '\\', control characters (as
// \n, \r, \t or \u00xx), U+2028 and U+2029 are escaped; '<', '>', '&' and
// all other characters are written as UTF-8; invalid UTF-8 bytes become
// U+FFFD. Decoding a line with encoding/json and encoding it again gives
// the same bytes (a fuzz test holds the encoder to this).
//
// # Hash chain
//
// The canonical bytes of a record are its line without the newline and
// without the trailing hash member: the line up to, not including,
// `,"hash":"`, followed by `}`. For example, the line
//
//	{"seq":7,"time":"…","node":"n","event":"stanza",…,"prev":"ab12…","hash":"cd34…"}
//
// has the canonical bytes
//
//	{"seq":7,"time":"…","node":"n","event":"stanza",…,"prev":"ab12…"}
//
// and its hash is
//
//	hash = hex(SHA-256(prev + "\n" + canonical))                (no key)
//	hash = hex(HMAC-SHA256(key, prev + "\n" + canonical))       (Config.HMACKey)
//
// with prev the 64 hex digits of the previous hash ("" for the first
// record of a chain). The verifier takes the canonical bytes from the line
// as it is, by cutting the hash member off textually, rather than by
// re-encoding the decoded record, so that no JSON round trip can make an
// intact record look edited or an edited one look intact. It reads seq
// (first member) and prev (last before hash) by position, and checks that
// the whole line is valid JSON.
//
// Editing any byte of a record breaks its hash; deleting, inserting,
// duplicating or reordering records breaks seq and prev. Without a key,
// someone who can write the files can rebuild a consistent chain after an
// edit (tamper evidence against accidents and casual edits only), and can
// cut records off the end unnoticed unless the last hash (printed by
// `xmppedge audit verify`) was kept elsewhere; leading files removed
// without a retention anchor are caught by verifying the whole series
// (see Retention).
// With an HMAC key (audit.hmac_key_file, read by [LoadHMACKey]) only a
// holder of the key can make a chain that verifies.
//
// # Retention
//
// [Log.ApplyRetention] deletes the oldest rotated files whose records are
// all older than Retention.MaxAge and that no [LegalHold] matches, oldest
// first and without holes (the first file that must stay keeps every newer
// one), as [PlanRetention] decides. It first verifies the files to delete,
// then appends an audit.anchor record naming the first record kept
// (anchor_seq, anchor_prev) and the files (deleted_files), waits until it
// is durable, and only then deletes. [VerifyResult.RequireAnchoredStart]
// turns a series that starts mid-chain into a break unless such an anchor
// in it names its start: files removed by anything else are caught (with
// an HMAC key; without one, whoever can write the files can forge the
// anchor too).
//
// # Reading
//
// [Verify] checks a series of files in order and names the first break
// (file, line, seq, reason); [VerifyEach] hands each verified record on in
// the same pass (`xmppedge audit export -format`, internal/audit/archive). [ReadRecords], [LastRecords] and [Follow]
// decode records for `xmppedge audit query` and `audit tail` (Follow goes
// on across rotation), [Filter] selects them and [TableWriter] prints a
// readable table.
package audit
