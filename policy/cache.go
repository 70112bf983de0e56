package policy

import (
	"hash/maphash"
	"sync"
)

// decisionCache maps a cache key (the values of the input leaves a policy
// reads) to a decision. It belongs to one loaded policy, so a reload
// starts from an empty cache. It is bounded, in generations: each shard
// holds a current and a previous map; when the current one is full it
// becomes the previous one (the older previous is dropped) and a key
// found only in the previous map moves back into the current one. So the
// keys in use survive a full cache (no cliff where every decision is
// evaluated again at once), and the entries never exceed the size given.
// Safe for concurrent use.
type decisionCache[D any] struct {
	seed     maphash.Seed
	shards   [16]cacheShard[D]
	perShard int // entries per generation
}

type cacheShard[D any] struct {
	mu       sync.RWMutex
	cur, old map[string]D
}

func newDecisionCache[D any](size int) *decisionCache[D] {
	if size <= 0 {
		return nil
	}
	c := &decisionCache[D]{seed: maphash.MakeSeed(), perShard: max(1, size/32)}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]D)
	}
	return c
}

func (c *decisionCache[D]) shard(key []byte) *cacheShard[D] {
	return &c.shards[maphash.Bytes(c.seed, key)&15]
}

func (c *decisionCache[D]) get(key []byte) (D, bool) {
	s := c.shard(key)
	s.mu.RLock()
	d, ok := s.cur[string(key)]
	if ok {
		s.mu.RUnlock()
		return d, true
	}
	d, ok = s.old[string(key)]
	s.mu.RUnlock()
	if ok {
		c.promote(s, key)
	}
	return d, ok
}

// promote moves key from the previous generation into the current one:
// it is in use.
func (c *decisionCache[D]) promote(s *cacheShard[D], key []byte) {
	s.mu.Lock()
	if d, ok := s.old[string(key)]; ok {
		delete(s.old, string(key))
		c.putLocked(s, string(key), d)
	}
	s.mu.Unlock()
}

// put stores key's decision in the current generation, starting a new
// one when it is full.
func (c *decisionCache[D]) put(key []byte, d D) {
	s := c.shard(key)
	s.mu.Lock()
	c.putLocked(s, string(key), d)
	s.mu.Unlock()
}

func (c *decisionCache[D]) putLocked(s *cacheShard[D], key string, d D) {
	if len(s.cur) >= c.perShard {
		s.old, s.cur = s.cur, make(map[string]D, c.perShard)
	}
	s.cur[key] = d
}

func (c *decisionCache[D]) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].cur) + len(c.shards[i].old)
		c.shards[i].mu.RUnlock()
	}
	return n
}
