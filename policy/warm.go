package policy

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Warm-up at reload: a new policy starts with the classes the old one had
// learnt.
//
// A load's caches start empty, so the first decision of every key class
// after a reload goes through OPA's evaluator (~0.2 ms p50, ~0.5 ms p99
// with 10,000 partners), its second one too, and the class is narrowed
// and its content programs built in the background one at a time: on a
// busy gateway a reload turns every stream's next stanzas cold at once.
//
// So a load keeps a sample input of each class it narrows (up to
// maxWarmSamples per decision; the first decision that starts the class's
// narrowing gives it), and a reload, before it makes the new policy
// active, decides the old load's samples with the new one on the
// reloading goroutine: the class is narrowed at once, a stanza with text
// gets its content program, and the decision is cached. The first new
// pair of JIDs of a known class is then a cache hit from the first
// stanza after the reload. The old policy keeps deciding meanwhile; the
// warm-up takes the newest samples first and stops at defaultWarmBudget, and a
// sample that the new policy puts in another class (new data) warms that
// class instead. The new load keeps the samples it decided, and at most
// maxInherited of them: the rest is room for the classes seen after the
// reload, so that the oldest give way over reloads.
//
// A sample keeps the input's addresses, ids and facts, never its text: a
// body, subject or thread is replaced by warmText, which gives the
// content program's memo the decision of a text that matches none of the
// usual tests (a keyword, a pattern), the vector of most messages. The
// memo stays exact for whatever text it is: it maps the tests' truth
// values to the decision of a text that has them (content.go).
//
// Warm-up decisions are not counted as decisions, and a failing one is
// neither counted nor logged as a denial (nothing was denied); a sample
// that fails is left cold.

const (
	// maxWarmSamples bounds the samples a load keeps per decision.
	maxWarmSamples = 512
	// maxInherited is how many of them a reload warms up at most: the
	// rest is room for classes seen after it.
	maxInherited = maxWarmSamples * 3 / 4
	// defaultWarmBudget bounds a reload's warm-up (a sample costs a partial
	// evaluation, 1–4 ms with 10,000 partners, and for text one more
	// for its content program).
	defaultWarmBudget = 3 * time.Second
	// warmText stands for a sample's text.
	warmText = "."
)

// warmSamples are a load's sample inputs, one per key class it narrowed.
type warmSamples struct {
	mu       sync.Mutex
	seen     map[string]struct{} // class keys sampled, "s"+session class or "m"+stanza class
	sessions []SessionInput
	stanzas  []StanzaInput
}

// addSession keeps a copy of in as the sample of the session class class,
// unless the class has one or the load has maxWarmSamples.
func (w *warmSamples) addSession(class []byte, in *SessionInput) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.first('s', class, len(w.sessions)) {
		return
	}
	w.sessions = append(w.sessions, *in)
}

// addStanza keeps a copy of in, without its text, as the sample of the
// stanza class class.
func (w *warmSamples) addStanza(class []byte, in *StanzaInput) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.first('m', class, len(w.stanzas)) {
		return
	}
	cp := copyStanzaInput(in)
	dropText(&cp)
	w.stanzas = append(w.stanzas, cp)
}

// dropText replaces each text of in that is not empty with warmText.
func dropText(in *StanzaInput) {
	for _, text := range []*string{&in.Body, &in.Subject, &in.Thread} {
		if *text != "" {
			*text = warmText
		}
	}
}

// first records class and reports whether it is new and there is room
// beside the n samples kept. Called with mu held.
func (w *warmSamples) first(kind byte, class []byte, n int) bool {
	if n >= maxWarmSamples {
		return false
	}
	if w.seen == nil {
		w.seen = map[string]struct{}{}
	}
	k := string(kind) + string(class)
	if _, ok := w.seen[k]; ok {
		return false
	}
	w.seen[k] = struct{}{}
	return true
}

// snapshot returns the samples kept so far.
func (w *warmSamples) snapshot() ([]SessionInput, []StanzaInput) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessions[:len(w.sessions):len(w.sessions)], w.stanzas[:len(w.stanzas):len(w.stanzas)]
}

// copyStanzaInput copies in and what it points to (the caller may reuse
// *in once its decision returns).
func copyStanzaInput(in *StanzaInput) StanzaInput {
	cp := *in
	cp.Children = append([]Child(nil), in.Children...)
	cp.FileTransfer = append([]FileTransfer(nil), in.FileTransfer...)
	if in.SecurityLabel != nil {
		sl := *in.SecurityLabel
		cp.SecurityLabel = &sl
	}
	if in.Session != nil {
		s := *in.Session
		cp.Session = &s
	}
	return cp
}

// warmUp decides the samples of old with l, which is not active yet,
// newest first, until they are done, budget has passed or ctx ends, and
// returns how many it decided. Only the newest maxInherited of each kind
// are tried, and l keeps as its own samples those it decided (in their
// order), so that an old class nobody uses any more gives way to new
// ones: over reloads, the samples are the classes seen most recently.
func (e *Engine) warmUp(ctx context.Context, old, l *loaded, budget time.Duration) int {
	if old == nil || e.noWarmUp {
		return 0
	}
	sessions, stanzas := old.warm.snapshot()
	return e.warmWith(ctx, l, sessions, stanzas, budget)
}

// warmWith is warmUp with the samples given: those of the old load, or
// at start those of the last run (warmfile.go).
func (e *Engine) warmWith(ctx context.Context, l *loaded, sessions []SessionInput, stanzas []StanzaInput, budget time.Duration) int {
	sessions, stanzas = sessions[max(0, len(sessions)-maxInherited):], stanzas[max(0, len(stanzas)-maxInherited):]
	if len(sessions)+len(stanzas) == 0 {
		return 0
	}
	deadline := time.Now().Add(budget)
	l.warming = true
	defer func() {
		l.warming = false
		l.warm.reverse() // decided newest first: back to oldest first
	}()
	n := 0
	more := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
	for i, j := len(sessions)-1, len(stanzas)-1; (i >= 0 || j >= 0) && more(); i, j = i-1, j-1 {
		if i >= 0 {
			e.decideSession(ctx, l, &sessions[i])
			n++
		}
		if j >= 0 {
			e.decideStanza(ctx, l, &stanzas[j])
			n++
		}
	}
	return n
}

// reverse reverses the order of the samples.
func (w *warmSamples) reverse() {
	w.mu.Lock()
	defer w.mu.Unlock()
	slices.Reverse(w.sessions)
	slices.Reverse(w.stanzas)
}
