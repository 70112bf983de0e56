// Package policy decides, with an embedded Open Policy Agent, which
// federated sessions xmppedge establishes and which stanzas cross it.
//
// # The model
//
// Rego is the one place where the rules live. An Engine loads a policy —
// a directory of .rego files plus data files (JSON or YAML), or an OPA
// bundle from a bundle server — compiles it once, and answers two
// questions whose paths are fixed, so that operators can write their own
// rules against them:
//
//   - the session decision, data.xmppedge.session.decision: may this
//     remote domain federate with this local domain, in this direction,
//     over this TLS, authenticated this way? Input: direction
//     ("inbound" | "outbound"), local_domain, remote_domain, remote_ip,
//     tls {version, cipher, peer_cert_valid, peer_cert_issuer,
//     peer_cert_error}, auth ("sasl_external" | "dialback" | "" before
//     authentication), now (RFC 3339, UTC, to the minute: a cache key
//     that changes once a minute; partners.go), remote {partner,
//     muc_service, audit_full} (what the data says of the remote domain,
//     computed by the engine: facet.go). Result: {allow, reason,
//     require, rate} where require may list "certificate" (the gateway
//     must authenticate the session by certificate, SASL EXTERNAL) and
//     "posture" (ask again once an outbound stream is authenticated), and rate, {per_second,
//     burst}, limits the remote domain's stanzas (a token bucket; a
//     positive number and a positive integer, else the decision fails).
//   - the stanza decision, data.xmppedge.stanza.decision: may this stanza
//     cross? Input: direction, kind, type, id, from and to {full, bare,
//     domain}, children [{name, namespace}], body, subject, thread,
//     security_label {marking, fgcolor, bgcolor, label} (absent when the
//     stanza has none), session {the session input of its stream}, and
//     the payload facts encryption, file_transfer [{method, host}] and
//     body_is_fallback (below), remote (as for sessions, of the
//     recipient's domain outbound, the sender's inbound) and local {user,
//     may_talk_outside} (what the data's user rules say of the local
//     user: facet.go). Result: {allow, reason, error, audit,
//     strip}: error is the stanza error condition of the bounce (default
//     "policy-violation"), audit is what the audit log keeps ("none",
//     "meta" — the default —, "hash", "full"), strip lists children
//     [{name, namespace}] the gateway removes before forwarding an
//     allowed stanza (both non-empty strings, else the decision fails; a
//     deny has no strip).
//
// The Go types SessionInput and StanzaInput are those documents (but for
// remote, which the engine adds); their JSON tags are the Rego field
// names.
//
// # Payload facts
//
// What the gateway can tell about a stanza it cannot read: encryption is
// "omemo" (eu.siacs.conversations.axolotl), "omemo2" (urn:xmpp:omemo:2),
// "openpgp" (XEP-0373 urn:xmpp:openpgp:0, or XEP-0027
// jabber:x:encrypted), "otr" (a body starting with "?OTR"), "xep0380:"
// plus the namespace a XEP-0380 <encryption/> tag names when it is none
// of those, or ""; file_transfer lists each way the stanza moves a file,
// {method: "oob" | "jingle" | "ibb" | "socks5", host: the OOB URL's host
// (lower-case A-labels) or ""}, a Jingle offer with a SOCKS5 or IBB
// transport counting as jingle and as that transport; body_is_fallback
// says the body is only a fallback text (encryption, XEP-0428, an OOB
// URL). The gateway computes them (internal/payload) only when
// NeedsPayloadFacts is true: when a rule reachable from the stanza
// decision reads input.encryption, input.file_transfer or
// input.body_is_fallback. Like the other content leaves they are never
// part of the decision cache's key: a stanza with all of them empty is
// answered from the header cache, others by their content program, whose
// key holds the facts exactly.//
// # Failing closed
//
// A decision that cannot be made is a deny: an evaluation error (a
// built-in error such as a division by zero or an invalid regular
// expression, conflicting rule values), a timeout (Config.Timeout, 50ms
// by default; the evaluation is cancelled, no goroutine per evaluation),
// an undefined decision, or a malformed one (allow not a boolean, an
// unknown audit level, …). Each is counted in Stats().Failures and logged
// at Warn with the reason. Built-in errors are strict: a failing built-in
// never silently makes a deny rule undefined.
//
// In dry-run mode (Config.Mode "dry-run") every decision is computed, and
// a deny — including a failure — is returned as Allow=true,
// WouldDeny=true with its reason kept, and logged at Info: a compliance
// team can roll a rule out and watch what it would do.
//
// # Data
//
// Data files are objects whose keys are merged under data.xmppedge:
// partners.yaml's "partners" list becomes data.xmppedge.partners. The
// keys session and stanza (any first segment of a package under
// data.xmppedge) are taken by the rules. At load, the engine checks and
// normalises what the shipped rules rely on: partner domains, audit_full
// and muc.services are put in lower-case A-label form (data files may
// use U-labels: bücher.example → xn--bcher-kva.example; the gateway sends
// A-labels), directions must be inbound, outbound or both, and
// confidential.patterns must compile. The partner settings of the shipped
// rules — allow_e2ee and strip_presence_status (booleans), allow_files
// (methods), upload_hosts (domains, normalised), rate ({per_second,
// burst}), strip_presence ([{name, namespace}]) — are checked too, in
// each partner entry and at the top level (where they are the default of
// every partner): a typo there rejects the file at load instead of
// failing a partner's decisions closed.
//
// # Built-in functions
//
// Content and domain matching are Go functions offered to Rego, declared
// per engine (per query, nothing is registered globally in OPA):
//
//	xmppedge.contains_any(text, keywords) → bool   keywords, ignoring case (Unicode lower-casing), one Aho-Corasick pass
//	xmppedge.matches_any(text, patterns) → bool    Go (RE2) regular expressions (prefiltered by literal prefix or first bytes)
//	xmppedge.domain_in(domain, patterns) → bool    "a.test", "*.a.test" (one or more whole labels), "*"
//	xmppedge.partners_for(domain, partners) → array  the entries of the most specific matching pattern
//
// A set (the array passed as keywords, patterns, …) is compiled once per
// load and found again by identity: reading the same data gives the same
// value, so 10,000 partners or 50 keywords cost one map lookup or one
// pass over the text per call. RunRegoTests (and "xmppedge policy test")
// runs the *_test.rego files with OPA's own test runner and the same
// built-ins.
//
// # Speed: the decision cache
//
// Queries are prepared once per load and fed an ast input built directly
// (only the top-level fields the policy reads), with a read transaction
// held for the life of the load and no metrics. On top of that, decisions
// are cached. At load the engine walks the compiled rules reachable from
// each decision and records every input path they refer to (input.from.bare,
// input.kind, input.session.tls.version, …). The cache key is the exact
// values of those paths, so a per-user rule caches per user and a rule on
// from.bare does not key on the resource. A decision is not cacheable when
// the rules refer to input as a whole or with a variable key (x := input,
// input[k]) or call a non-deterministic built-in (time.now_ns, http.send).
// A stanza whose rules read content (body, subject, thread, children,
// security_label, and the payload facts) is answered from that cache only
// when that content is empty in the stanza (presence, iq, chat states);
// others go through a content program. NeedsContent and NeedsPayloadFacts
// tell the gateway whether to parse payloads at all. The cache belongs to one loaded policy (so a reload
// starts from empty), is bounded (Config.CacheSize, 100,000 per decision;
// a full shard is emptied) and safe for concurrent use. Failures are never
// cached. A cached decision is the whole value, strip and rate included;
// the Strip and Rate of a returned decision are shared with the cache:
// read them, never modify them.
//
// # Speed: key narrowing
//
// A key holds every leaf the rules read anywhere, but many rules read a
// leaf only in some cases: the shipped stanza rules read the sender's bare
// JID for an outbound stanza and the recipient's for an inbound one (the
// local user's rules) or one to a room; the session rules read input.now
// only for a partner under agreement. Keyed on every leaf, each new pair
// of JIDs would be a new key evaluated in full, and each session key new
// once a minute. So the narrowable leaves (the JIDs' full and bare forms,
// the stanza id, now and remote_ip) are kept out of a key's class — the
// other leaves' values and a stanza's content keys —, and at a class's
// second decision the engine partially evaluates the decision in the
// background with those leaves (and the text) unknown and the rest known.
// The narrowable leaves the residual reads, directly or through a rule it
// still calls, are kept in the keys of that class; the others cannot
// change its decisions and are dropped. A new pair of JIDs in a known class
// is then a cache hit (BenchmarkNewPair10kDomains), and a partner's session
// stays cached from one minute to the next. Rules written with else, or
// that read a JID as an object, are narrowed less, never wrongly: a leaf
// is dropped only when the residual provably does not read it, and a
// partial evaluation that fails keeps every leaf. Stats().KeyNarrowings
// counts the partial evaluations (narrow.go has the details).
//
// The domains are narrowable too (a stanza's, a session's remote domain),
// because the engine tells the rules what the data says of the remote
// domain: input.remote, its partner entries (xmppedge.partners_for, minus
// the domain patterns), whether it is a MUC service and whether it is
// audited in full, looked up in Go with the built-ins' matchers and keyed
// by a facet id per distinct value (facet.go). The shipped rules read
// those facts rather than looking the domain up, so an allowed decision
// does not read the domain, and the first stanza from a new partner
// domain whose entries are like another's is a cache hit
// (BenchmarkNewPartnerDomain10kDomains), where it was a full evaluation
// (~0.2 ms with 10,000 partners, after every policy load). A refusal that
// names the domain keeps it in its keys. input.local does the same for the
// local user and the data's user rules: an allowed user's first stanza is
// a cache hit (BenchmarkNewLocalUser10kUsers), where it was a full
// evaluation that built the external_users set (26 ms with 10,000 users).
//
// # Speed: content programs
//
// A stanza with content is decided by a content program of its key: the
// header key above plus the exact children, security label and payload
// facts (when the rules read them). The program is derived from the compiled policy by
// partial evaluation: the stanza decision is evaluated with the header
// known and input.body, input.subject and input.thread unknown, and OPA
// returns the residual rules. When the residual reads the text only in
// tests of one field against ground values — xmppedge.contains_any and
// xmppedge.matches_any over a set, contains, startswith, endswith,
// regex.match, ==, != — the decision is a function of those tests' truth
// values: per message the program runs the tests in Go (all the keyword
// sets of a field in one Aho-Corasick pass) and looks the resulting bit
// vector up in a memo of decisions, filled by a full evaluation the first
// time a vector is seen (never with a failure). Anything else in the
// residual (count(input.body), a reason built from the subject, a policy
// function left unevaluated, …) leaves the key without a program: each of
// its stanzas is evaluated in full, exactly as before. The first two
// stanzas of a key are evaluated in full; the third starts its program's
// build in the background (one build at a time, and one partial
// evaluation of the engine at a time, key narrowing's included: a
// partial evaluation with 10,000 partners costs about 3 ms, a dozen full
// evaluations, so a pair of JIDs that exchanges a message or two is not
// worth one); programs are
// cached per loaded policy like decisions (Config.CacheSize; a negative
// size disables both).
// Stats().ContentPrograms counts the builds; decisions from a program's
// memo count as cache hits and are marked Cached.
//
// # Reload
//
// Reload re-reads the source; a policy that does not parse or compile is
// rejected with the file and line to fix, the old one stays active, and
// Stats().ReloadFailures counts it. Watch polls the files' sizes and
// modification times every second (or downloads the bundle every
// BundleConfig.Poll, conditionally with ETag) and reloads on a change.
// Every successful reload calls the OnReload callbacks with the new
// revision: the gateway re-decides its established sessions there. The
// revision is the bundle manifest's revision, or a short hash of all
// loaded files; every decision carries it.
//
// A new load starts with empty caches, so without more the first stanzas
// of every stream after a reload would be evaluated in full at once. So
// a load keeps one sample input per key class it narrows (addresses, ids
// and facts, never the text), and a reload first decides the old load's
// samples with the new policy, narrowing their classes and building
// their content programs on the reloading goroutine, and only then makes
// it active (warm.go; bounded to 3 s, the old policy answering
// meanwhile; Config.WarmBudget). A new pair of JIDs in a class the
// gateway had seen is then a cache hit from the first stanza after the
// reload (BenchmarkFirstDecisionAfterReload10kDomains); Stats().WarmedClasses
// counts the samples decided. With Config.SampleFile the samples outlive
// the process (warmfile.go): SaveSamples writes them, and New decides
// them before its first load is active, so a restart starts warm too.
//
// # Bundles
//
// BundleConfig.URL names an OPA bundle (.tar.gz with .rego files,
// data.json, .manifest, optionally .signatures.json). With
// BundleConfig.PublicKey (a PEM RSA or ECDSA public key, or certificate)
// bundles must carry a valid signature over all their files (OPA's bundle
// signing, as made by "opa build --signing-key"); an unsigned, tampered or
// foreign-signed bundle is rejected and the old policy stays. The first
// load must succeed: New fails if the bundle server cannot be reached.
package policy
