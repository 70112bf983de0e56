package policy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Key narrowing: a decision cache key without the leaves the decision does
// not depend on.
//
// The cache key holds every input leaf the rules refer to anywhere (see
// analyze). Some of those leaves have many values and matter only in some
// cases: the shipped stanza rules read the sender's bare JID only for an
// outbound stanza (the local user's rules) and the recipient's only for an
// inbound one or a room; the session rules read input.now only for a
// partner under agreement. Keyed on all of them, every new pair of JIDs is
// a new key, evaluated in full (~0.3 ms with 10,000 partners), and every
// session key is new once a minute.
//
// So the narrowable leaves — the JIDs (full, bare, domain) and the stanza
// id; the session's remote_domain, now and remote_ip (also under a
// stanza's session) —
// are kept out of a key's class: the values of every other leaf the rules
// read, and for a stanza its content keys (children, security label,
// payload facts; see appendContentKey). Once per class, from a
// representative input, the decision is partially evaluated with the
// narrowable leaves and the text fields unknown and everything else
// known. The narrowable leaves that the residual reads — directly, or
// through a rule or function of the policy it still calls (followed with
// analyze) — are the class's kept leaves. A leaf the residual never reads
// cannot change the decision of any input of the class, whatever its value
// or text. From then on a key is the class and the kept leaves' values:
// the decision (or, stanza, the content program) of one pair of JIDs is
// that of every pair of the class that agrees on the kept leaves.
//
// Until a class is narrowed its keys hold every narrowable leaf, as
// without narrowing. The partial evaluation (about the cost of a content
// program build) starts at a class's second decision (narrowAfter) and
// runs in the background, one at a time per decision (a class whose
// decision finds one running is tried again later), and never beside
// another partial evaluation of the engine (Engine.partialMu). Classes
// are few — a kind and type, a direction, the remote domain's facts
// (input.remote) —, so they are narrowed
// sooner than a content program (per pair of JIDs, from its
// programAfter-th stanza) is built. A failed or panicking one keeps every
// leaf: a class is never narrowed on a doubt.

// narrowing is a query's key narrowing; nil when none of its key's leaves
// is narrowable.
type narrowing struct {
	leaves    []leaf        // the class: the key's leaves that are not narrowable, in key order
	narrow    []leaf        // the key's narrowable leaves, in key order
	paths     [][]string    // their input paths
	schema    []leafPath    // the query's input schema
	unknowns  []*ast.Term   // input refs of narrow (and, stanza, of the text fields)
	compiler  *ast.Compiler // to follow the rules a residual calls
	ppq       rego.PreparedPartialQuery
	txn       storage.Transaction
	partialMu *sync.Mutex // Engine.partialMu

	classes   *decisionCache[*keyClass]
	sightings *decisionCache[uint8] // decisions of a class not narrowed yet (narrowAfter)
	builds    chan struct{}         // one partial evaluation at a time, in the background
	buildWG   sync.WaitGroup        // tests: wait for the builds
}

// keyClass is what a class's decisions depend on of the narrowable leaves.
type keyClass struct {
	pending bool   // being narrowed
	keep    []leaf // the narrowable leaves the decision reads (a subsequence of narrowing.narrow)
	why     string // why every leaf is kept, when that is not the residual's reading (tests, logs)
}

// pendingClass marks a class whose partial evaluation is running.
var pendingClass = &keyClass{pending: true}

// Narrowable leaves. The domains too: with the partner facets
// (input.remote_partner, facet.go) in the class, a decision need not read
// the remote domain, and then one serves every partner domain whose
// entries are alike.
var (
	sessionNarrowable = []leaf{lfRemoteDomain, lfRemoteIP, lfNow}
	stanzaNarrowable  = []leaf{lfID, lfFromFull, lfFromBare, lfFromDomain, lfToFull, lfToBare, lfToDomain,
		lfSessionBase + lfRemoteDomain, lfSessionBase + lfRemoteIP, lfSessionBase + lfNow}
)

// prepareNarrowing sets q.narrow when q is cacheable and its key holds
// narrowable leaves. text are the unknowns beyond those leaves (the
// stanza's text fields).
func prepareNarrowing[D any](ctx context.Context, q *query[D], c *ast.Compiler, store storage.Store, b *builtinSet, partialMu *sync.Mutex,
	ref ast.Ref, schema []leafPath, narrowable []leaf, text []*ast.Term, cacheSize int) error {
	if !q.cacheable {
		return nil
	}
	n := &narrowing{schema: schema, compiler: c, txn: q.txn, partialMu: partialMu}
	for _, lf := range q.leaves {
		if slices.Contains(narrowable, lf) {
			n.narrow = append(n.narrow, lf)
		} else {
			n.leaves = append(n.leaves, lf)
		}
	}
	if len(n.narrow) == 0 {
		return nil
	}
	for _, lf := range n.narrow {
		i := slices.IndexFunc(schema, func(lp leafPath) bool { return lp.leaf == lf })
		n.paths = append(n.paths, schema[i].path)
		r := ast.Ref{ast.InputRootDocument}
		for _, s := range schema[i].path {
			r = append(r, ast.StringTerm(s))
		}
		n.unknowns = append(n.unknowns, ast.NewTerm(r))
	}
	n.unknowns = append(n.unknowns, text...)
	// Full inlining, as for content programs (and so under
	// Engine.partialMu: its copy propagation writes into the terms it
	// plugs). Shallow inlining would keep as a support rule every rule
	// that refers to an unknown anywhere, even where its value is known
	// for the class — the shipped rules' partner entries, which fall back
	// to looking the (unknown) domain up when input.remote is missing —,
	// and the residual would read the domain in rules that never apply.
	ppq, err := preparePartial(ctx, ref, c, store, b)
	if err != nil {
		return err
	}
	n.ppq = ppq
	n.classes = newDecisionCache[*keyClass](cacheSize)
	n.sightings = newDecisionCache[uint8](cacheSize)
	n.builds = make(chan struct{}, 1)
	q.narrow = n
	return nil
}

// narrowAfter is how many decisions of a class are made before it is
// narrowed: not the first, so that a peer sending stanzas of classes
// never seen again (a made-up type attribute each) costs no partial
// evaluation; classes are few, and a real one comes back at once.
const narrowAfter = 2

// classLeaves looks up the class whose key (n.leaves, and a stanza's
// content keys) is class, and returns what completes a decision's key:
// a marker byte and the leaves to append — the class's kept leaves once
// it is narrowed, else every narrowable leaf. start reports that the class
// is neither narrowed nor being narrowed and has been seen narrowAfter
// times (at once: now): the caller starts its narrowing (startNarrowing).
// (The caller appends the leaves itself: a call through a function value
// would move every key buffer to the heap.)
func (n *narrowing) classLeaves(class []byte, atOnce bool) (marker byte, leaves []leaf, start bool) {
	cls, _ := n.classes.get(class)
	if cls != nil && !cls.pending && len(cls.keep) < len(n.narrow) {
		// Marked 1: a narrowed key never equals a key of every leaf
		// (marked 0, also the key of a class that keeps every leaf).
		return 1, cls.keep, false
	}
	return 0, n.narrow, cls == nil && (atOnce || seen(n.sightings, class, narrowAfter))
}

// seen counts a decision of key, and reports whether key has now been
// seen times times (and the counter is spent).
func seen(sightings *decisionCache[uint8], key []byte, times uint8) bool {
	n, _ := sightings.get(key)
	if n+1 >= times {
		return true
	}
	sightings.put(key, n+1)
	return false
}

// startNarrowing narrows the class of key from the input document known
// (built by the caller without the text fields; its narrowable leaves are
// removed here): in the background unless another narrowing of this query
// is running (then the class is tried again later), or at once (tests,
// a reload's warm-up: Engine.atOnce).
func (e *Engine) startNarrowing(n *narrowing, class []byte, known ast.Value, atOnce bool) {
	timeout := max(e.cfg.Timeout, maxPEDuration)
	if atOnce {
		e.narrowings.Add(1)
		n.classes.put(class, n.narrowClass(context.Background(), withoutPaths(known, n.paths), timeout))
		return
	}
	select {
	case n.builds <- struct{}{}:
	default:
		return
	}
	e.narrowings.Add(1)
	known = withoutPaths(known, n.paths)
	k := string(class)
	n.classes.put([]byte(k), pendingClass)
	n.buildWG.Add(1)
	go func() {
		defer n.buildWG.Done()
		defer func() { <-n.builds }()
		var cls *keyClass
		defer func() {
			if r := recover(); r != nil { // an OPA bug must not take the gateway down
				cls = &keyClass{keep: n.narrow, why: fmt.Sprint("partial evaluation panicked: ", r)}
			}
			n.classes.put([]byte(k), cls)
			if cls.why != "" {
				e.log.Debug("decision key class not narrowed; keyed on every leaf", "why", cls.why)
			}
		}()
		cls = n.narrowClass(context.Background(), known, timeout)
	}()
}

// narrowClass partially evaluates the decision with known as the input
// and finds the narrowable leaves its residual reads.
func (n *narrowing) narrowClass(ctx context.Context, known ast.Value, timeout time.Duration) *keyClass {
	pq, err := n.partial(ctx, known, timeout)
	if err != nil {
		return &keyClass{keep: n.narrow, why: "partial evaluation failed: " + err.Error()}
	}
	r := residualReads{n: n, analyzed: map[string]bool{}}
	for _, body := range pq.Queries {
		if !deadBody(body) {
			r.walk(body)
		}
	}
	for _, m := range pq.Support {
		for _, rule := range m.Rules {
			if rule.Else == nil && deadBody(rule.Body) {
				continue // it never applies: what it reads does not matter
			}
			r.walk(rule)
		}
	}
	switch {
	case r.use.whole:
		return &keyClass{keep: n.narrow, why: "the residual reads the input as a whole, or with a variable key"}
	case r.all != "":
		return &keyClass{keep: n.narrow, why: r.all}
	}
	var keep []leaf
	for i, lf := range n.narrow {
		if r.reads(n.paths[i]) {
			keep = append(keep, lf)
		}
	}
	return &keyClass{keep: keep}
}

// deadBody reports whether a residual body can never succeed: one of its
// expressions is "not true", as partial evaluation leaves a negated
// condition it found true (the shipped rules' "not partner_ok" for a
// partner).
func deadBody(body ast.Body) bool {
	for _, expr := range body {
		if t, ok := expr.Terms.(*ast.Term); ok && expr.Negated && len(expr.With) == 0 && t.Value.Compare(ast.Boolean(true)) == 0 {
			return true
		}
	}
	return false
}

// partial runs the partial evaluation, alone among the engine's (see
// Engine.partialMu; the lock is released even if OPA panics).
func (n *narrowing) partial(ctx context.Context, known ast.Value, timeout time.Duration) (*rego.PartialQueries, error) {
	n.partialMu.Lock() // before the deadline starts: waiting here is not evaluating
	defer n.partialMu.Unlock()
	cancel := &evalCancel{ctx: ctx, deadline: time.Now().Add(timeout)}
	return n.ppq.Partial(ctx,
		rego.EvalParsedInput(known),
		rego.EvalParsedUnknowns(n.unknowns),
		rego.EvalTransaction(n.txn),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalExternalCancel(cancel),
	)
}

// residualReads collects the input paths a residual reads: in its own
// references to input (use, as analyze finds them in the policy) and in
// the rules of the policy it still calls.
type residualReads struct {
	n        *narrowing
	use      inputUse
	analyzed map[string]bool // policy rules already followed
	all      string          // why every leaf counts as read (a called rule reads the input whole)
}

func (r *residualReads) walk(x any) {
	r.use.walk(x)
	ast.NewGenericVisitor(func(x any) bool {
		if ref, ok := x.(ast.Ref); ok && len(ref) > 0 && ref[0].Value.Compare(ast.DefaultRootDocument.Value) == 0 {
			r.data(ref)
		}
		return false
	}).Walk(x)
}

// data follows a reference to a rule or function of the policy: what the
// rules under it read of the input counts as read. A reference to a rule
// of the support modules (walked themselves) finds no rule of the policy,
// unless one of the policy's packages has the same path: then that rule
// counts too, which can only keep more.
func (r *residualReads) data(ref ast.Ref) {
	prefix := ref.GroundPrefix()
	k := prefix.String()
	if r.analyzed[k] {
		return
	}
	r.analyzed[k] = true
	use := analyze(r.n.compiler, prefix)
	if use.whole && r.all == "" {
		r.all = fmt.Sprintf("the residual calls %v, which reads the input as a whole", prefix)
	}
	r.use.paths = append(r.use.paths, use.paths...)
}

// reads reports whether a read path is the leaf's path, under it, or
// above it (input.from reads input.from.bare).
func (r *residualReads) reads(leafPath []string) bool {
	for _, p := range r.use.paths {
		n := min(len(p), len(leafPath))
		if slices.Equal(p[:n], leafPath[:n]) {
			return true
		}
	}
	return false
}

// withoutPaths returns the object v without the given paths (a path of
// several keys goes into nested objects), for a partial evaluation that
// must not know them.
func withoutPaths(v ast.Value, paths [][]string) ast.Value {
	obj, ok := v.(ast.Object)
	if !ok {
		return v
	}
	pairs := make([][2]*ast.Term, 0, obj.Len())
	obj.Foreach(func(k, val *ast.Term) {
		ks, _ := k.Value.(ast.String)
		var sub [][]string
		for _, p := range paths {
			if p[0] != string(ks) {
				continue
			}
			if len(p) == 1 {
				return // dropped
			}
			sub = append(sub, p[1:])
		}
		if len(sub) > 0 {
			val = ast.NewTerm(withoutPaths(val.Value, sub))
		}
		pairs = append(pairs, [2]*ast.Term{k, val})
	})
	return ast.NewObject(pairs...)
}
