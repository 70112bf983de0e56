package resolve

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey identifies one question: lowercase FQDN and query type.
type cacheKey struct {
	name  string
	qtype uint16
}

// answer is what the resolver keeps of a response: the response code and the
// records of the answer section.
type answer struct {
	rcode   int
	records []dns.RR
	secure  bool // the resolver set the AD bit: DNSSEC-authenticated
}

type cacheEntry struct {
	answer  answer
	expires time.Time
}

// answerCache is a bounded TTL cache of answers, safe for concurrent use.
type answerCache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]cacheEntry
	now     func() time.Time
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, entries: make(map[cacheKey]cacheEntry), now: time.Now}
}

func (c *answerCache) get(k cacheKey) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return answer{}, false
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, k)
		return answer{}, false
	}
	return e.answer, true
}

func (c *answerCache) put(k cacheKey, a answer, ttl time.Duration) {
	if ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, present := c.entries[k]; !present && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{answer: a, expires: now.Add(ttl)}
}

// evictLocked makes room for one entry: it drops every expired entry, and if
// none had expired, about a tenth of the entries (map order, so arbitrary).
func (c *answerCache) evictLocked(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.max {
		return
	}
	drop := c.max/10 + 1
	for k := range c.entries {
		if drop == 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
