package edge

import (
	"slices"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	type op struct {
		do   string // add, refuse (admit false), create, remove, removeOther, close
		key  string
		want bool // add/create: added (created); others ignored
	}
	tests := []struct {
		name string
		ops  []op
		keys []string // the sessions left, sorted
	}{
		{"add and snapshot", []op{{"add", "a", true}, {"add", "b", true}}, []string{"a", "b"}},
		{"admit refuses", []op{{"refuse", "a", false}}, nil},
		{"create once", []op{{"create", "a", true}, {"create", "a", false}}, []string{"a"}},
		{"remove only the current session", []op{{"add", "a", true}, {"removeOther", "a", false}}, []string{"a"}},
		{"remove", []op{{"add", "a", true}, {"remove", "a", false}}, nil},
		{"closed refuses", []op{{"add", "a", true}, {"close", "", false}, {"add", "b", false}, {"create", "c", false}}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry[string, *string]()
			sessions := map[string]*string{}
			session := func(k string) *string {
				if sessions[k] == nil {
					v := k
					sessions[k] = &v
				}
				return sessions[k]
			}
			for _, o := range tt.ops {
				switch o.do {
				case "add":
					if got := r.add(o.key, session(o.key), func() bool { return true }); got != o.want {
						t.Fatalf("add(%s) = %v, want %v", o.key, got, o.want)
					}
				case "refuse":
					if r.add(o.key, session(o.key), func() bool { return false }) {
						t.Fatalf("add(%s) admitted against admit", o.key)
					}
				case "create":
					_, created, _ := r.getOrCreate(o.key, func() *string { return session(o.key) })
					if created != o.want {
						t.Fatalf("getOrCreate(%s) created = %v, want %v", o.key, created, o.want)
					}
				case "remove":
					r.remove(o.key, session(o.key))
				case "removeOther":
					other := "other"
					r.remove(o.key, &other)
				case "close":
					r.close()
				}
			}
			var keys []string
			for _, s := range r.snapshot(nil) {
				keys = append(keys, *s)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.keys) {
				t.Fatalf("sessions = %v, want %v", keys, tt.keys)
			}
		})
	}
}

// Concurrent adds and a close: every add either lands before the close
// (and is in its snapshot) or is refused.
func TestRegistryCloseRace(t *testing.T) {
	r := newRegistry[int, *int]()
	var wg sync.WaitGroup
	added := make([]bool, 200)
	for i := range added {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i
			added[i] = r.add(i, &v, nil)
		}()
	}
	snap := r.close()
	wg.Wait()
	in := map[int]bool{}
	for _, s := range snap {
		in[*s] = true
	}
	for i, a := range added {
		if a != in[i] {
			t.Fatalf("session %d: added %v, in the close snapshot %v", i, a, in[i])
		}
	}
}
