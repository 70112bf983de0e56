package edge

import "sync"

// registry is the table of one kind of session (incoming streams, outgoing
// streams), safe for concurrent use. The loops that act on every session
// (shutdown, policy re-check, the admin API) work on a snapshot taken
// under the lock and act outside it, so a session that blocks cannot hold
// the table.
type registry[K comparable, S comparable] struct {
	mu     sync.Mutex
	m      map[K]S
	closed bool // no session is added any more
}

func newRegistry[K comparable, S comparable]() *registry[K, S] {
	return &registry[K, S]{m: make(map[K]S)}
}

// add puts s under k unless the registry is closed or admit (run under
// the lock, may be nil) refuses; it reports whether s was added.
func (r *registry[K, S]) add(k K, s S, admit func() bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || admit != nil && !admit() {
		return false
	}
	r.m[k] = s
	return true
}

// getOrCreate returns the session under k, or makes one with create (run
// under the lock: it must not block) and adds it; created says which. ok
// is false once the registry is closed.
func (r *registry[K, S]) getOrCreate(k K, create func() S) (s S, created, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return s, false, false
	}
	if s, found := r.m[k]; found {
		return s, false, true
	}
	s = create()
	r.m[k] = s
	return s, true, true
}

// remove takes s out from under k, if it is still the session there.
func (r *registry[K, S]) remove(k K, s S) {
	r.mu.Lock()
	if cur, ok := r.m[k]; ok && cur == s {
		delete(r.m, k)
	}
	r.mu.Unlock()
}

// snapshot returns the sessions for which keep (may be nil) is true.
func (r *registry[K, S]) snapshot(keep func(K, S) bool) []S {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]S, 0, len(r.m))
	for k, s := range r.m {
		if keep == nil || keep(k, s) {
			out = append(out, s)
		}
	}
	return out
}

// close refuses every later add and returns the sessions there are.
func (r *registry[K, S]) close() []S {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.snapshot(nil)
}
