package policy

import (
	"hash/maphash"
	"sync"
)

// decisionCache maps a cache key (the values of the input leaves a policy
// reads) to a decision. It belongs to one loaded policy, so a reload
// starts from an empty cache. It is bounded: a shard that is full is
// emptied. Safe for concurrent use.
type decisionCache[D any] struct {
	seed     maphash.Seed
	shards   [16]cacheShard[D]
	perShard int
}

type cacheShard[D any] struct {
	mu sync.RWMutex
	m  map[string]D
}

func newDecisionCache[D any](size int) *decisionCache[D] {
	if size <= 0 {
		return nil
	}
	c := &decisionCache[D]{seed: maphash.MakeSeed(), perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]D)
	}
	return c
}

func (c *decisionCache[D]) shard(key []byte) *cacheShard[D] {
	return &c.shards[maphash.Bytes(c.seed, key)&15]
}

func (c *decisionCache[D]) get(key []byte) (D, bool) {
	s := c.shard(key)
	s.mu.RLock()
	d, ok := s.m[string(key)]
	s.mu.RUnlock()
	return d, ok
}

func (c *decisionCache[D]) put(key []byte, d D) {
	s := c.shard(key)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[string(key)] = d
	s.mu.Unlock()
}

func (c *decisionCache[D]) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
