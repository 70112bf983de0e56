package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Paths of the two decisions.
var (
	sessionDecisionRef = ast.MustParseRef("data.xmppedge.session.decision")
	stanzaDecisionRef  = ast.MustParseRef("data.xmppedge.stanza.decision")
)

// Engine decides sessions and stanzas with the loaded policy. It is safe
// for concurrent use; a reload swaps the whole loaded policy at once.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	current atomic.Pointer[loaded]

	reloadMu sync.Mutex // one load at a time
	bundle   *bundleSource

	watchInterval time.Duration // file polling; 1s
	noPrograms    bool          // tests and benchmarks: no content programs (from the next load)
	syncPrograms  bool          // tests: build content programs and narrow key classes on the deciding goroutine
	noNarrowing   bool          // tests and benchmarks: no key narrowing (from the next load)
	noRemoteFacts bool          // tests: no input.remote nor input.local, the rules look up themselves (from the next load)
	noWarmUp      bool          // tests and benchmarks: reloads do not warm the new policy up (warm.go)
	warmBudget    time.Duration // bounds a warm-up: Config.WarmBudget

	hooksMu sync.Mutex
	hooks   []func(revision string)

	// partialMu serialises the partial evaluations (content programs, key
	// narrowing): OPA's copy propagation writes the values of terms it
	// plugs in place, interned ones included (count's results, small
	// numbers: the same value, but a data race for any other partial
	// evaluation reading them). It also bounds the background work to one
	// partial evaluation at a time.
	partialMu sync.Mutex

	decisions, cacheHits, failures, reloads, reloadFailures, programs, narrowings, warmed atomic.Uint64
}

// loaded is one compiled policy with its prepared queries and caches.
type loaded struct {
	revision     string
	digest       string
	session      query[SessionDecision]
	stanza       query[StanzaDecision]
	needsContent bool
	needsFacts   bool // payload facts: encryption, file_transfer, body_is_fallback
	builtins     *builtinSet
	shapes       shapeCache  // content program shapes (content.go)
	partners     []Partner   // data.xmppedge.partners (partners.go)
	facets       *facetTable // input.remote and input.local (facet.go)
	warm         warmSamples // a sample input per key class narrowed, for the next load's warm-up (warm.go)
	// warming is set while a reload warms this load up, before it is
	// active (no other goroutine sees it then): classes are narrowed and
	// programs built at once, failures are not counted.
	warming bool
}

// query is one prepared decision query.
type query[D any] struct {
	pq        rego.PreparedEvalQuery
	txn       storage.Transaction // a read transaction held for the life of the load
	use       inputUse
	need      uint32 // top-level input fields to build
	leaves    []leaf // header leaves forming the cache key
	content   []leaf // content leaves read: the stanza must have them empty to be cached
	cacheable bool
	cache     *decisionCache[D]
	facets    *facetTable // the load's (facet.go)

	// Stanza only: content programs (see content.go), when the policy
	// reads content and decisions are cacheable.
	ppq       rego.PreparedPartialQuery
	progs     *decisionCache[*contentProgram]
	sightings *decisionCache[uint8] // stanzas of a key without a program (programAfter)
	builds    chan struct{}         // one program built at a time, in the background
	buildWG   sync.WaitGroup        // tests: wait for the builds

	narrow *narrowing // key narrowing (narrow.go); nil: none
}

// New loads the policy named by cfg. An error is a load or compile error
// that names the file and line (or the bundle) to fix.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeEnforce
	case ModeEnforce, ModeDryRun:
	default:
		return nil, fmt.Errorf("policy mode %q: use %q or %q", cfg.Mode, ModeEnforce, ModeDryRun)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.WarmBudget <= 0 {
		cfg.WarmBudget = defaultWarmBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "policy"), watchInterval: time.Second, warmBudget: cfg.WarmBudget}
	switch {
	case cfg.Bundle != nil && cfg.Rules != "":
		return nil, errors.New("policy: rules and bundle are exclusive: configure one source")
	case cfg.Bundle != nil:
		if len(cfg.Data) > 0 {
			return nil, errors.New("policy: data files go with rules, not with a bundle (put data.json in the bundle)")
		}
		b, err := newBundleSource(*cfg.Bundle, &http.Client{})
		if err != nil {
			return nil, err
		}
		e.bundle = b
	case cfg.Rules == "":
		return nil, errors.New("policy: no source: set rules (a directory of .rego files) or bundle")
	}
	src, err := e.read(ctx)
	if err != nil {
		return nil, err
	}
	l, err := e.prepare(ctx, src)
	if err != nil {
		return nil, err
	}
	e.warmFromFile(ctx, l)
	e.current.Store(l)
	e.log.Info("policy loaded", "revision", l.revision, "source", src.origin, "mode", cfg.Mode,
		"needs_content", l.needsContent, "needs_payload_facts", l.needsFacts, "session_cacheable", l.session.cacheable, "stanza_cacheable", l.stanza.cacheable)
	return e, nil
}

// read reads the configured source. For a bundle, a nil source with no
// error means "not modified".
func (e *Engine) read(ctx context.Context) (*source, error) {
	if e.bundle != nil {
		return e.bundle.fetch(ctx)
	}
	return loadFiles(e.cfg.Rules, e.cfg.Data, false)
}

// Reload reads the source again and, if it compiles, makes it active. On
// error the old policy stays active and the error says what to fix.
func (e *Engine) Reload(ctx context.Context) error {
	_, err := e.reload(ctx, true)
	return err
}

// reload returns whether a new policy was activated. force: activate and
// notify even if the revision did not change (an operator's SIGHUP).
func (e *Engine) reload(ctx context.Context, force bool) (bool, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	old := e.current.Load()
	fail := func(err error) (bool, error) {
		e.reloadFailures.Add(1)
		e.log.Warn("policy reload rejected; the previous policy stays active", "revision", old.revision, "err", err)
		return false, err
	}
	src, err := e.read(ctx)
	if err != nil {
		return fail(err)
	}
	if src == nil || (!force && src.digest == old.digest) {
		return false, nil // unchanged
	}
	l, err := e.prepare(ctx, src)
	if err != nil {
		return fail(err)
	}
	warmStart := time.Now()
	warmed := e.warmUp(ctx, old, l, e.warmBudget)
	e.current.Store(l)
	e.reloads.Add(1)
	e.warmed.Add(uint64(warmed))
	e.log.Info("policy reloaded", "revision", l.revision, "previous", old.revision, "needs_content", l.needsContent, "needs_payload_facts", l.needsFacts,
		"warmed_classes", warmed, "warm_up", time.Since(warmStart).Round(time.Millisecond))
	e.hooksMu.Lock()
	hooks := append([]func(string){}, e.hooks...)
	e.hooksMu.Unlock()
	for _, fn := range hooks {
		fn(l.revision)
	}
	return true, nil
}

// Revision is the active policy's revision: the bundle manifest's
// revision, or a short hash of all loaded files.
func (e *Engine) Revision() string { return e.current.Load().revision }

// NeedsContent reports whether the active policy reads input.body,
// subject, thread, children or security_label. When false the gateway
// need not parse stanza payloads.
func (e *Engine) NeedsContent() bool { return e.current.Load().needsContent }

// NeedsPayloadFacts reports whether the active policy reads
// input.encryption, input.file_transfer or input.body_is_fallback (or the
// input as a whole). When false the gateway need not classify payloads:
// StanzaInput.Encryption, FileTransfer and BodyIsFallback may stay empty.
// Like NeedsContent it can change with a reload: ask per stanza (it is
// one atomic load).
func (e *Engine) NeedsPayloadFacts() bool { return e.current.Load().needsFacts }

// OnReload registers fn, called with the new revision after every
// successful reload (from Reload, Watch or a bundle poll). Gateways use it
// to re-decide their established sessions.
func (e *Engine) OnReload(fn func(revision string)) {
	e.hooksMu.Lock()
	e.hooks = append(e.hooks, fn)
	e.hooksMu.Unlock()
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Decisions:       e.decisions.Load(),
		CacheHits:       e.cacheHits.Load(),
		Failures:        e.failures.Load(),
		Reloads:         e.reloads.Load(),
		ReloadFailures:  e.reloadFailures.Load(),
		ContentPrograms: e.programs.Load(),
		KeyNarrowings:   e.narrowings.Load(),
		WarmedClasses:   e.warmed.Load(),
	}
}

// capabilities are OPA's, plus the xmppedge built-ins.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, customBuiltinDecls()...)
	return caps
}

// compileModules compiles modules with the xmppedge built-ins declared.
func compileModules(modules map[string]*ast.Module) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithCapabilities(capabilities()).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("policy does not compile (fix the file and line named): %w", c.Errors)
	}
	return c, nil
}

// prepare compiles a source and prepares both decision queries.
func (e *Engine) prepare(ctx context.Context, src *source) (*loaded, error) {
	if err := checkDataAgainstPackages(src); err != nil {
		return nil, err
	}
	c, err := compileModules(src.modules)
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(src.data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))
	l := &loaded{revision: src.revision, digest: src.digest, builtins: newBuiltinSet(), partners: partnersOf(src.data)}
	if l.facets, err = newFacetTable(src.data); err != nil {
		return nil, fmt.Errorf("policy data: %w", err)
	}
	l.session.facets, l.stanza.facets = l.facets, l.facets
	if err := prepareQuery(ctx, &l.session, c, store, l.builtins, sessionDecisionRef, sessionSchema, sessionFieldBits, e.cfg.CacheSize); err != nil {
		return nil, err
	}
	if err := prepareQuery(ctx, &l.stanza, c, store, l.builtins, stanzaDecisionRef, stanzaSchema, stanzaFieldBits, e.cfg.CacheSize); err != nil {
		return nil, err
	}
	if e.noRemoteFacts {
		l.session.need &^= sessionRemoteBit
		l.stanza.need &^= stanzaRemoteBit | stanzaLocalBit
	}
	l.needsContent = l.stanza.use.whole || slices.ContainsFunc(l.stanza.content, func(lf leaf) bool { return !isPayloadFactLeaf(lf) })
	l.needsFacts = l.stanza.use.whole || slices.ContainsFunc(l.stanza.content, isPayloadFactLeaf)
	if !e.noNarrowing {
		if err := prepareNarrowing(ctx, &l.session, c, store, l.builtins, &e.partialMu, sessionDecisionRef, sessionSchema, sessionNarrowable, nil, e.cfg.CacheSize); err != nil {
			return nil, err
		}
		if err := prepareNarrowing(ctx, &l.stanza, c, store, l.builtins, &e.partialMu, stanzaDecisionRef, stanzaSchema, stanzaNarrowable, contentUnknowns, e.cfg.CacheSize); err != nil {
			return nil, err
		}
	}
	if q := &l.stanza; q.cacheable && len(q.content) > 0 && !e.noPrograms {
		if err := prepareContentPrograms(ctx, q, c, store, l.builtins, e.cfg.CacheSize); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// prepareContentPrograms prepares the partial evaluation of the stanza
// decision from which content programs are built.
func prepareContentPrograms(ctx context.Context, q *query[StanzaDecision], c *ast.Compiler, store storage.Store, b *builtinSet, cacheSize int) error {
	ppq, err := preparePartial(ctx, stanzaDecisionRef, c, store, b)
	if err != nil {
		return err
	}
	q.ppq = ppq
	q.progs = newDecisionCache[*contentProgram](cacheSize)
	q.sightings = newDecisionCache[uint8](cacheSize)
	q.builds = make(chan struct{}, 1)
	return nil
}

func prepareQuery[D any](ctx context.Context, q *query[D], c *ast.Compiler, store storage.Store, b *builtinSet,
	ref ast.Ref, schema []leafPath, bits map[string]uint32, cacheSize int) error {
	opts := []func(*rego.Rego){
		rego.Query(ref.String()),
		rego.Compiler(c),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
		// Results stay AST terms: the decision is read without a JSON round trip.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	}
	opts = append(opts, b.regoOptions()...)
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("preparing %v: %w", ref, err)
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return fmt.Errorf("opening the policy store: %w", err)
	}
	q.pq = pq
	q.txn = txn
	q.use = analyze(c, ref)
	q.need = q.use.fieldBits(bits)
	q.cacheable = cacheSize > 0 && !q.use.whole && !q.use.nondeterministic
	for _, l := range leavesFor(schema, q.use.paths) {
		if &schema[0] == &stanzaSchema[0] && isContentLeaf(l) {
			q.content = append(q.content, l)
		} else {
			q.leaves = append(q.leaves, l)
		}
	}
	if q.use.whole && &schema[0] == &stanzaSchema[0] {
		q.content = allContentLeaves
	}
	if q.cacheable {
		q.cache = newDecisionCache[D](cacheSize)
	}
	return nil
}

// preparePartial prepares the partial evaluation of the decision at ref
// (content programs, key narrowing).
func preparePartial(ctx context.Context, ref ast.Ref, c *ast.Compiler, store storage.Store, b *builtinSet, extra ...func(*rego.Rego)) (rego.PreparedPartialQuery, error) {
	opts := []func(*rego.Rego){
		rego.Query(ref.String()),
		rego.Compiler(c),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
	}
	opts = append(opts, extra...)
	opts = append(opts, b.regoOptions()...)
	ppq, err := rego.New(opts...).PrepareForPartial(ctx)
	if err != nil {
		return ppq, fmt.Errorf("preparing the partial evaluation of %v: %w", ref, err)
	}
	return ppq, nil
}

// evalCancel cancels an evaluation at a deadline or when ctx ends, without
// a goroutine per evaluation: the evaluator polls Cancelled, and every
// 16th poll looks at the clock.
type evalCancel struct {
	ctx      context.Context
	deadline time.Time
	polls    atomic.Uint32
	done     atomic.Bool
	timedOut atomic.Bool
}

func (c *evalCancel) Cancel() { c.done.Store(true) }

func (c *evalCancel) Cancelled() bool {
	if c.done.Load() {
		return true
	}
	if c.polls.Add(1)&15 != 0 {
		return false
	}
	if time.Now().After(c.deadline) {
		c.timedOut.Store(true)
		c.done.Store(true)
		return true
	}
	if c.ctx.Err() != nil {
		c.done.Store(true)
		return true
	}
	return false
}

// eval evaluates a prepared query; the result is the decision term, or
// nil when undefined.
func (e *Engine) eval(ctx context.Context, pq rego.PreparedEvalQuery, txn storage.Transaction, input ast.Value) (*ast.Term, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("not evaluated: %w", err)
	}
	cancel := &evalCancel{ctx: ctx, deadline: time.Now().Add(e.cfg.Timeout)}
	rs, err := pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalTransaction(txn),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalExternalCancel(cancel),
	)
	if err != nil {
		if topdown.IsCancel(err) && cancel.timedOut.Load() {
			return nil, fmt.Errorf("evaluation timed out after %v (raise policy timeout or simplify the rules)", e.cfg.Timeout)
		}
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	t, _ := rs[0].Expressions[0].Value.(*ast.Term)
	return t, nil
}

// failure counts and logs a failed decision of l (a warm-up's only at
// Debug: it denied nothing).
func (e *Engine) failure(kind string, l *loaded, err error, attrs ...any) string {
	reason := "policy failure, failing closed: " + err.Error()
	attrs = append([]any{"decision", kind, "revision", l.revision, "err", err}, attrs...)
	if l.warming {
		e.log.Debug("policy warm-up decision failed; its class stays cold", attrs...)
		return reason
	}
	e.failures.Add(1)
	e.log.Warn("policy decision failed; denied (fail closed)", attrs...)
	return reason
}

// atOnce reports whether l narrows classes and builds content programs
// on the deciding goroutine (tests, and a warm-up).
func (e *Engine) atOnce(l *loaded) bool { return e.syncPrograms || l.warming }

// DecideSession decides whether a session may be established.
func (e *Engine) DecideSession(ctx context.Context, in *SessionInput) SessionDecision {
	e.decisions.Add(1)
	return e.applySessionMode(e.decideSession(ctx, e.current.Load(), in), in)
}

// decideSession decides in with the loaded policy l (the active one, or
// one a reload warms up).
func (e *Engine) decideSession(ctx context.Context, l *loaded, in *SessionInput) SessionDecision {
	q := &l.session
	var keyBuf [256]byte
	var key []byte
	if q.cacheable {
		key = e.sessionKey(l, in, keyBuf[:0])
	}
	d, hit := decideThroughCache(e, q.cache, q.cacheable, !l.warming, key, func() (SessionDecision, bool) {
		return e.evalSession(ctx, l, in)
	})
	if hit {
		d.Cached = true
	}
	return d
}

// sessionKey appends the decision cache key of in: its leaves, narrowed
// (narrow.go) once its class is.
func (e *Engine) sessionKey(l *loaded, in *SessionInput, key []byte) []byte {
	q := &l.session
	pf := q.facets.sessionFacet(in, q.need)
	n := q.narrow
	if n == nil {
		for _, lf := range q.leaves {
			key = appendSessionLeaf(key, in, lf, pf)
		}
		return key
	}
	key = appendSessionClass(n, in, key, pf)
	atOnce := e.atOnce(l)
	marker, narrow, start := n.classLeaves(key, atOnce)
	if start {
		l.warm.addSession(key, in)
		e.startNarrowing(n, key, sessionValue(in, q.need, pf), atOnce)
		if atOnce { // narrowed already: the key of this decision too
			marker, narrow, _ = n.classLeaves(key, false)
		}
	}
	key = append(key, marker)
	for _, lf := range narrow {
		key = appendSessionLeaf(key, in, lf, pf)
	}
	return key
}

// stanzaKey appends the key of in: of the decision cache, or with program
// (the stanza has content) of its content program, which adds the content
// keys. A narrowed key (narrow.go) always holds the content keys: they are
// part of its class.
func (e *Engine) stanzaKey(l *loaded, in *StanzaInput, key []byte, program bool) []byte {
	q := &l.stanza
	f := q.facets.stanzaFacets(in, q.need)
	n := q.narrow
	if n == nil {
		for _, lf := range q.leaves {
			key = appendStanzaLeaf(key, in, lf, &f)
		}
		if program {
			for _, lf := range q.content {
				key = appendContentKey(key, in, lf)
			}
		}
		return key
	}
	key = appendStanzaClass(q, in, key, &f)
	atOnce := e.atOnce(l)
	marker, narrow, start := n.classLeaves(key, atOnce)
	if start {
		l.warm.addStanza(key, in)
		e.startNarrowing(n, key, stanzaValue(in, q.need&^textFieldBits, &f), atOnce)
		if atOnce { // narrowed already: the key of this decision too
			marker, narrow, _ = n.classLeaves(key, false)
		}
	}
	key = append(key, marker)
	for _, lf := range narrow {
		key = appendStanzaLeaf(key, in, lf, &f)
	}
	return key
}

// appendSessionClass appends the class part of a session key (narrow.go).
func appendSessionClass(n *narrowing, in *SessionInput, key []byte, pf remoteFacet) []byte {
	for _, lf := range n.leaves {
		key = appendSessionLeaf(key, in, lf, pf)
	}
	return key
}

// appendStanzaClass appends the class part of a stanza key (narrow.go):
// its leaves that are not narrowable, then its content keys.
func appendStanzaClass(q *query[StanzaDecision], in *StanzaInput, key []byte, f *inputFacets) []byte {
	for _, lf := range q.narrow.leaves {
		key = appendStanzaLeaf(key, in, lf, f)
	}
	for _, lf := range q.content {
		key = appendContentKey(key, in, lf)
	}
	return key
}

// decideThroughCache answers a decision from cache under key when
// cacheable, counting the hit when count (hit is then true); otherwise, and on a
// miss, it calls evaluate, whose decision is cached when cacheable and
// evaluate reports no failure (ok).
func decideThroughCache[D any](e *Engine, cache *decisionCache[D], cacheable, count bool, key []byte, evaluate func() (d D, ok bool)) (d D, hit bool) {
	if cacheable {
		if d, ok := cache.get(key); ok {
			if count {
				e.cacheHits.Add(1)
			}
			return d, true
		}
	}
	d, ok := evaluate()
	if ok && cacheable {
		cache.put(key, d)
	}
	return d, false
}

// evalSession evaluates; ok is false for a failure (not cached).
func (e *Engine) evalSession(ctx context.Context, l *loaded, in *SessionInput) (SessionDecision, bool) {
	d := SessionDecision{Revision: l.revision}
	t, err := e.eval(ctx, l.session.pq, l.session.txn, sessionValue(in, l.session.need, l.facets.sessionFacet(in, l.session.need)))
	if err == nil && t == nil {
		err = errors.New("decision undefined: data.xmppedge.session.decision has no value for this input (a policy must define it, e.g. with a default)")
	}
	if err == nil {
		err = parseSessionDecision(t, &d)
	}
	if err != nil {
		d = SessionDecision{Revision: l.revision} // nothing of a malformed decision is kept
		d.Reason = e.failure("session", l, err, "direction", in.Direction, "local", in.LocalDomain, "remote", in.RemoteDomain)
		return d, false
	}
	return d, true
}

func (e *Engine) applySessionMode(d SessionDecision, in *SessionInput) SessionDecision {
	if !d.Allow && e.cfg.Mode == ModeDryRun {
		d.Allow, d.WouldDeny = true, true
		e.log.Info("policy would deny session (dry-run)", "reason", d.Reason, "revision", d.Revision,
			"direction", in.Direction, "local", in.LocalDomain, "remote", in.RemoteDomain)
	}
	return d
}

// DecideStanza decides whether a stanza may cross the edge.
func (e *Engine) DecideStanza(ctx context.Context, in *StanzaInput) StanzaDecision {
	e.decisions.Add(1)
	return e.applyStanzaMode(e.decideStanza(ctx, e.current.Load(), in), in)
}

// decideStanza decides in with the loaded policy l (the active one, or
// one a reload warms up).
func (e *Engine) decideStanza(ctx context.Context, l *loaded, in *StanzaInput) StanzaDecision {
	q := &l.stanza
	var keyBuf [512]byte
	var key []byte
	cacheable := q.cacheable
	if cacheable {
		for _, lf := range q.content {
			if !contentEmpty(in, lf) {
				cacheable = false
				break
			}
		}
	}
	if !cacheable && q.progs != nil {
		return e.decideContent(ctx, l, in, e.stanzaKey(l, in, keyBuf[:0], true))
	}
	if cacheable {
		key = e.stanzaKey(l, in, keyBuf[:0], false)
	}
	d, hit := decideThroughCache(e, q.cache, cacheable, !l.warming, key, func() (StanzaDecision, bool) {
		return e.evalStanza(ctx, l, in)
	})
	if hit {
		d.Cached = true
	}
	return d
}

func (e *Engine) evalStanza(ctx context.Context, l *loaded, in *StanzaInput) (StanzaDecision, bool) {
	d := StanzaDecision{Revision: l.revision, Audit: AuditMeta}
	f := l.facets.stanzaFacets(in, l.stanza.need)
	t, err := e.eval(ctx, l.stanza.pq, l.stanza.txn, stanzaValue(in, l.stanza.need, &f))
	if err == nil && t == nil {
		err = errors.New("decision undefined: data.xmppedge.stanza.decision has no value for this input (a policy must define it, e.g. with a default)")
	}
	if err == nil {
		err = parseStanzaDecision(t, &d)
	}
	if err != nil {
		d = StanzaDecision{Revision: l.revision, Audit: AuditMeta}
		d.Reason = e.failure("stanza", l, err, "direction", in.Direction, "kind", in.Kind, "from", in.From.Full, "to", in.To.Full)
		d.Error = DefaultStanzaError
		return d, false
	}
	return d, true
}

func (e *Engine) applyStanzaMode(d StanzaDecision, in *StanzaInput) StanzaDecision {
	if !d.Allow && e.cfg.Mode == ModeDryRun {
		d.Allow, d.WouldDeny = true, true
		e.log.Info("policy would deny stanza (dry-run)", "reason", d.Reason, "revision", d.Revision,
			"direction", in.Direction, "kind", in.Kind, "from", in.From.Full, "to", in.To.Full)
	}
	return d
}
