// Package jid owns XMPP addresses (RFC 7622): splitting a JID into its
// parts and preparing each part into the one canonical form the gateway
// judges, so that a policy rule written for mallory@company.test also
// catches ｍａｌｌｏｒｙ@company.test, MALLORY@Company.Test. and every other
// spelling the internal server would deliver to the same account.
//
// # Model
//
// A [JID] is three prepared strings. [Prepare] is the only way to make one
// from untrusted input; two JIDs name the same entity exactly when they are
// equal (==). Policy data that names JIDs or domains must be prepared with
// the same functions, or a rule may never match.
//
// Splitting follows RFC 7622 §3.1 before any mapping: the resourcepart is
// everything after the first '/', the localpart everything before the first
// '@' that precedes it, the domainpart what remains. A '@' or '/' that
// appears only after mapping (e.g. fullwidth ＠) never splits; it is then
// an excluded or disallowed character.
//
// Preparation of each part:
//
//   - localpart: PRECIS UsernameCaseMapped (RFC 8265 §3.3: fullwidth and
//     halfwidth forms folded, lowercased, NFC, IdentifierClass, Bidi rule),
//     then RFC 7622 §3.3.1's excluded characters " & ' / : < > @. Two
//     further rules make the result fail closed where a stringprep server
//     would disagree (see below): U+200C/U+200D (ZWNJ, ZWJ) are rejected,
//     and so is a localpart that Unicode full case folding would change
//     (ß, final ς, Cherokee, Greek letters with ypogegrammeni).
//   - domainpart: one trailing '.' is stripped first (RFC 7622 §3.2). An
//     IPv4 address in dotted-decimal form is kept in that form; an IPv6
//     literal in brackets is rewritten to its RFC 5952 form ("[0::1]" ->
//     "[::1]"); IPv4-mapped IPv6 literals and zones are refused. Any other
//     domainpart is processed by UTS #46 non-transitional mapping with
//     IDNA2008 validation (STD3 ASCII rules, hyphen and joiner checks,
//     Bidi rule, DNS lengths: labels of 1..63 octets and at most 253 octets
//     in A-label form) and kept in its lowercase U-label form: bücher.example,
//     BÜCHER.example and xn--bcher-kva.example all become bücher.example. A
//     last label made only of digits is refused unless the whole domain is
//     an IPv4 address ("0x7f.1", "01.2.3.4" are not names and some
//     resolvers read them as addresses). Domains containing the IDNA
//     deviation characters ß, ς, ZWJ or ZWNJ are refused (see below).
//   - resourcepart: PRECIS OpaqueString (RFC 8265 §4.2: non-ASCII spaces
//     mapped to U+0020, NFC, FreeformClass). Case and width are kept.
//
// Each part must be 1..1023 octets after preparation; an empty localpart
// with '@' or an empty resourcepart with '/' is an error, as is invalid
// UTF-8. A part longer than 4096 octets before preparation is refused
// without preparing it (and a whole JID longer than 3×4096+2 octets before
// it is split, with Part "jid"), so the work per JID is bounded.
//
// Every error is an [*Error] naming the part and the reason.
//
// # What the internal server does with each form
//
// Prosody (and other servers built on stringprep, RFC 6122) prepares
// localparts with nodeprep (NFKC and full case folding, Unicode 3.2) and
// domains with nameprep (IDNA2003), and keeps A-labels as they are written.
// Where the two preparations disagree this package errs on the side of
// rejecting, never of letting two strings the internal server treats as
// one look different here:
//
//   - Compatibility characters (bobⅣ, ﬁ, ①): nodeprep maps bobⅣ to bobiv;
//     PRECIS IdentifierClass disallows them, so Prepare refuses the JID.
//   - Fullwidth letters: both map them to ASCII (ｍａｌｌｏｒｙ -> mallory).
//   - ß, ς and the like: nodeprep folds "straße" to "strasse"; PRECIS keeps
//     ß. Prepare refuses localparts that case folding would change, so
//     "straße@x" cannot slip past a rule for "strasse@x".
//   - ZWJ/ZWNJ: nodeprep deletes them, PRECIS keeps them in some scripts;
//     Prepare refuses them in localparts, and refuses the deviation
//     characters in domains, where IDNA2003 (and UTS #46 transitional
//     processing) would map straße.example to strasse.example.
//   - A-labels: the canonical form here is the U-label, as RFC 7622 §3.2.1
//     requires. Prosody's nameprep does not decode punycode, so for it
//     xn--bcher-kva.example and bücher.example are two different host
//     strings for the same DNS name; a rule written for bücher.example
//     here covers both spellings, which is the conservative choice.
//   - Characters unassigned in Unicode 3.2 pass through nodeprep
//     unchanged, while PRECIS may lowercase them: Prepare then merges two
//     strings the internal server keeps apart, which can only make a rule
//     match more, not less.
//   - Resourceparts: resourceprep applies NFKC, OpaqueString only NFC, so
//     "phone①" and "phone1" are different resources here and the same one
//     there. Rules should judge bare JIDs ([JID.Bare]), not resources.
//
// # Hot path
//
// Prepare runs for the from and to of every stanza. Input that is printable
// ASCII and provably canonical apart from ASCII case (an LDH domain without
// A-labels, a localpart of allowed ASCII, an ASCII resource) is prepared
// without the Unicode machinery and, when it is already lowercase, without
// allocating; everything else takes the full preparation. FuzzFastPath
// checks that both give the same result on any input.
package jid
