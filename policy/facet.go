package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Remote facets: input.remote.
//
// The shipped rules look a decision's remote domain up in the policy data:
// its partner entries (xmppedge.partners_for over data.xmppedge.partners),
// whether it is a MUC service (muc.services) and whether it is audited in
// full (audit_full). Read so, the remote domain is in every decision key
// (narrow.go), and the first decision for each partner domain is
// evaluated in full — with 10,000 partners ~0.2 ms each, again after
// every policy load — although most partners' entries are alike
// ({direction: both}).
//
// So the engine looks the remote domain up itself, with the same
// matchers, and gives the rules what the data says of it as input.remote:
//
//	{"partner": [entries of its most specific pattern, without "domain"],
//	 "muc_service": bool, "audit_full": bool}
//
// of a session's remote domain, of a stanza's (the recipient's domain
// outbound, the sender's inbound, as the shipped rules' remote_domain),
// and under input.session of the stanza's session's. The shipped rules
// read it instead of looking the domain up, and the domain itself only
// where it shows (reasons). The domains are narrowable leaves (narrow.go)
// and input.remote is keyed by its facet: an id per distinct value, given
// when the data is loaded. A class's partial evaluation then finds that
// its decision does not read the domain — an allowed stanza, say — and one
// decision serves every partner domain whose facts are alike. A policy
// that reads the domain anyway keeps it in its keys: nothing is assumed of
// the rules.
//
// The facts are exactly what the lookups in the rules find
// (TestRemoteFacetMatchesLookup); the rules fall back to those lookups
// when the input has no remote (opa test, an input written by hand).

// facetTable is a load's facets: it maps a remote domain to its facet
// (input.remote) and, through local, a local user to theirs (input.local).
type facetTable struct {
	partner  *domainMatcher[partnerMatch] // partner patterns (also Engine.PartnerOf's)
	muc      *domainMatcher[struct{}]     // muc.services
	audit    *domainMatcher[struct{}]     // audit_full
	partners []*ast.Term                  // distinct entry lists (without patterns); 0: none
	terms    []*ast.Term                  // the input.remote objects, by facet id (see facetID)
	local    *localFacets                 // input.local; nil: not offered
}

// partnerMatch is what a partner pattern maps to: itself, and its partner
// facet (an index into facetTable.partners).
type partnerMatch struct {
	pattern string
	facet   uint32
}

// remoteFacet is a domain's input.remote: its facet id and value.
type remoteFacet struct {
	id   uint32
	term *ast.Term
}

// facetID combines a partner facet and the two flags.
func facetID(partner uint32, muc, audit bool) uint32 {
	id := partner << 2
	if muc {
		id |= 2
	}
	if audit {
		id |= 1
	}
	return id
}

var (
	kPartner    = ast.StringTerm("partner")
	kMUCService = ast.StringTerm("muc_service")
	kAuditFull  = ast.StringTerm("audit_full")
)

// newFacetTable builds the facets of a normalised data document
// (normalizeData has checked the partner entries and put every domain in
// A-label form).
func newFacetTable(data map[string]any) (*facetTable, error) {
	f := &facetTable{
		partner:  newDomainMatcher[partnerMatch](),
		muc:      newDomainMatcher[struct{}](),
		audit:    newDomainMatcher[struct{}](),
		partners: []*ast.Term{ast.ArrayTerm()},
	}
	root, _ := data[dataRoot].(map[string]any)
	list, _ := root["partners"].([]any)
	if err := f.addPartners(list); err != nil {
		return nil, err
	}
	muc, _ := root["muc"].(map[string]any)
	if err := addDomains(f.muc, muc["services"], "muc.services"); err != nil {
		return nil, err
	}
	if err := addDomains(f.audit, root["audit_full"], "audit_full"); err != nil {
		return nil, err
	}
	f.local = newLocalFacets(data)
	for p := range f.partners {
		for _, muc := range []bool{false, true} {
			for _, audit := range []bool{false, true} {
				id := facetID(uint32(p), muc, audit)
				for len(f.terms) <= int(id) {
					f.terms = append(f.terms, nil)
				}
				f.terms[id] = ast.ObjectTerm(
					[2]*ast.Term{kPartner, f.partners[p]},
					[2]*ast.Term{kMUCService, ast.InternedTerm(muc)},
					[2]*ast.Term{kAuditFull, ast.InternedTerm(audit)},
				)
			}
		}
	}
	return f, nil
}

// addPartners groups the partner entries by pattern, as
// xmppedge.partners_for does, and gives each distinct list of entries
// (without their domain patterns) one partner facet.
func (f *facetTable) addPartners(list []any) error {
	byPattern := map[string][]any{}
	var order []string
	for i, x := range list {
		entry, _ := x.(map[string]any)
		d, _ := entry["domain"].(string)
		p, err := normalizeDomain(d)
		if err != nil {
			return fmt.Errorf("partners[%d]: %w", i, err)
		}
		rest := make(map[string]any, len(entry))
		for k, v := range entry {
			if k != "domain" {
				rest[k] = v
			}
		}
		if _, seen := byPattern[p]; !seen {
			order = append(order, p)
		}
		byPattern[p] = append(byPattern[p], rest)
	}
	ids := map[string]uint32{}
	for _, p := range order {
		entries := byPattern[p]
		canonical, err := json.Marshal(entries) // object keys sorted: equal entries, equal bytes
		if err != nil {
			return fmt.Errorf("partner %s: %w", p, err)
		}
		id, ok := ids[string(canonical)]
		if !ok {
			v, err := ast.InterfaceToValue(entries)
			if err != nil {
				return fmt.Errorf("partner %s: %w", p, err)
			}
			id = uint32(len(f.partners))
			ids[string(canonical)] = id
			f.partners = append(f.partners, ast.NewTerm(v))
		}
		if err := f.partner.add(p, partnerMatch{pattern: p, facet: id}); err != nil {
			return fmt.Errorf("partner %s: %w", p, err)
		}
	}
	return nil
}

// addDomains adds a data list of domain patterns (as xmppedge.domain_in
// reads it) to m.
func addDomains(m *domainMatcher[struct{}], list any, name string) error {
	items, _ := list.([]any)
	for _, x := range items {
		if s, ok := x.(string); ok {
			if err := m.add(s, struct{}{}); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// of returns the facet of domain.
func (f *facetTable) of(domain string) remoteFacet {
	var partner uint32
	if v := f.partner.lookup(domain); len(v) > 0 {
		partner = v[0].facet
	}
	id := facetID(partner, f.muc.lookup(domain) != nil, f.audit.lookup(domain) != nil)
	return remoteFacet{id: id, term: f.terms[id]}
}

// value is the facet's input.remote (nil for a facet not looked up: the
// caller builds the field only when it looked it up).
func (rf remoteFacet) value() *ast.Term {
	if rf.term == nil {
		return ast.NullTerm() // never read: see need
	}
	return rf.term
}

// inputFacets are the facets of a decision's remote domains: remote, of
// the session's remote domain or of the stanza's; session, of a stanza's
// session's; and local, of a stanza's local user. Looked up only when the
// rules read them.
type inputFacets struct {
	remote, session remoteFacet
	local           localFacet
}

// sessionFacet returns the facet of a session's remote domain when the
// rules read input.remote.
func (f *facetTable) sessionFacet(in *SessionInput, need uint32) remoteFacet {
	if need&sessionRemoteBit == 0 {
		return remoteFacet{}
	}
	return f.of(in.RemoteDomain)
}

// stanzaFacets returns the facets of a stanza's remote domain (the
// recipient's outbound, the sender's otherwise, as the shipped rules'
// remote_domain), of its session's and of its local user (the sender
// outbound, the recipient otherwise), those the rules read.
func (f *facetTable) stanzaFacets(in *StanzaInput, need uint32) inputFacets {
	var out inputFacets
	if need&stanzaRemoteBit != 0 {
		if in.Direction == Outbound {
			out.remote = f.of(in.To.Domain)
		} else {
			out.remote = f.of(in.From.Domain)
		}
	}
	if need&stanzaLocalBit != 0 && f.local != nil {
		if in.Direction == Outbound {
			out.local = f.local.of(in.From.Bare)
		} else {
			out.local = f.local.of(in.To.Bare)
		}
	}
	if need&stanzaSessionBit != 0 && in.Session != nil { // input.session: built whole
		out.session = f.of(in.Session.RemoteDomain)
	}
	return out
}

// Local facets: input.local.
//
// The same for the stanza's local user (the sender outbound, the
// recipient inbound, as the shipped rules' local_bare): with per-user
// rules in the data (blocked_users, external_users and their groups), the
// rules read the user's bare JID, and each local user's first stanza of a
// class was evaluated in full. The engine gives the rules
//
//	{"user": the JID has a local part, "may_talk_outside": bool}
//
// computed as common.user_may_talk_outside does (Unicode lower case,
// blocked_users, then external_users directly or through "group:NAME");
// an allowed user's decision then reads neither JID. Data whose user
// lists are not lists of strings (which the rules would fail on) gets no
// input.local: the rules decide, and fail, themselves.

// localFacets holds the user lists, lower-cased; nil when input.local is
// not offered.
type localFacets struct {
	blocked    map[string]bool
	external   map[string]bool // external_users, and the members of its groups
	restricted bool            // external_users is configured: only those listed may talk outside
	terms      [4]*ast.Term    // by localFacet id
}

// localFacet is a local user's input.local: its id (bit 1: a user, bit 0:
// may talk outside) and value.
type localFacet struct {
	id   uint32
	term *ast.Term
}

var (
	kUser           = ast.StringTerm("user")
	kMayTalkOutside = ast.StringTerm("may_talk_outside")
)

// newLocalFacets reads the user lists of a normalised data document, as
// common.rego does; nil when they are not what the rules can read.
func newLocalFacets(data map[string]any) *localFacets {
	root, _ := data[dataRoot].(map[string]any)
	f := &localFacets{blocked: map[string]bool{}, external: map[string]bool{}}
	strs := func(v any) ([]string, bool) {
		if v == nil {
			return nil, true
		}
		list, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]string, 0, len(list))
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	blocked, ok := strs(root["blocked_users"])
	if !ok {
		return nil
	}
	for _, u := range blocked {
		f.blocked[strings.ToLower(u)] = true
	}
	ext, present := root["external_users"]
	f.restricted = present && ext != false
	if f.restricted {
		listed, ok := strs(ext)
		if !ok {
			return nil
		}
		groups, _ := root["groups"].(map[string]any)
		for _, e := range listed {
			f.external[strings.ToLower(e)] = true
			if name, ok := strings.CutPrefix(e, "group:"); ok {
				members, ok := strs(groups[name])
				if !ok {
					return nil
				}
				for _, m := range members {
					f.external[strings.ToLower(m)] = true
				}
			}
		}
	}
	for id := range f.terms {
		f.terms[id] = ast.ObjectTerm(
			[2]*ast.Term{kUser, ast.InternedTerm(id&2 != 0)},
			[2]*ast.Term{kMayTalkOutside, ast.InternedTerm(id&1 != 0)},
		)
	}
	return f
}

// of returns the facet of a local bare JID.
func (f *localFacets) of(bare string) localFacet {
	var id uint32
	if strings.Contains(bare, "@") {
		id |= 2
	}
	l := strings.ToLower(bare)
	if !f.blocked[l] && (!f.restricted || f.external[l]) {
		id |= 1
	}
	return localFacet{id: id, term: f.terms[id]}
}
