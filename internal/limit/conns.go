package limit

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The limits a ConnError names.
const (
	LimitConcurrent = "concurrent" // the source has maxConcurrent connections open
	LimitRate       = "rate"       // the source opened connections faster than perSecond
	LimitSources    = "sources"    // every entry of the table has open connections
	LimitAddress    = "address"    // the address is not valid (a zero netip.Addr)
)

// ConnError says which limit refused a connection.
type ConnError struct {
	Limit  string       // LimitConcurrent, LimitRate, LimitSources or LimitAddress
	Source netip.Prefix // the source the limit is kept for: an IPv4 /32 or IPv6 /64
	// The limits in force for the call.
	MaxConcurrent int
	PerSecond     float64
}

func (e *ConnError) Error() string {
	switch e.Limit {
	case LimitConcurrent:
		return fmt.Sprintf("limit: %s has %d connections open, the most allowed per source", e.Source, e.MaxConcurrent)
	case LimitRate:
		return fmt.Sprintf("limit: %s opens connections faster than %g per second", e.Source, e.PerSecond)
	case LimitSources:
		return fmt.Sprintf("limit: %s: too many sources with connections open", e.Source)
	}
	return "limit: not a valid source address"
}

// Conns limits the connections each source may hold and open per second.
// It is safe for concurrent use.
type Conns struct {
	mu      sync.Mutex
	t       *table[netip.Prefix] // lists only sources with no connection open
	dropped uint64
}

// NewConns returns a limiter that keeps state for at most maxIPs sources
// (at least one). Choose maxIPs above the node's total connection cap.
func NewConns(maxIPs int) *Conns {
	return &Conns{t: newTable[netip.Prefix](maxIPs)}
}

// Source returns the prefix under which ip is counted: the IPv4 address
// (IPv4-mapped IPv6 included) as a /32, an IPv6 address's /64.
func Source(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Acquire admits one new connection from ip at now, if the source has
// fewer than maxConcurrent connections open and has not opened more than
// perSecond a second (bucket size: perSecond rounded up, at least 1). On
// success the caller must call release when the connection closes;
// release is safe to call more than once and from any goroutine, and only
// the first call counts. The error is a *ConnError naming the limit.
func (c *Conns) Acquire(ip netip.Addr, maxConcurrent int, perSecond float64, now time.Time) (release func(), err error) {
	if !ip.IsValid() {
		return nil, &ConnError{Limit: LimitAddress, MaxConcurrent: maxConcurrent, PerSecond: perSecond}
	}
	src := Source(ip)
	refuse := func(limit string) (func(), error) {
		return nil, &ConnError{Limit: limit, Source: src, MaxConcurrent: maxConcurrent, PerSecond: perSecond}
	}
	if maxConcurrent <= 0 {
		return refuse(LimitConcurrent)
	}
	limit, _, ok := limitOf(perSecond)
	if !ok {
		return refuse(LimitRate)
	}
	burst := 1
	if limit != rate.Inf && perSecond > 1 {
		burst = int(math.Min(math.Ceil(perSecond), math.MaxInt32))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.t.m[src]
	if e == nil {
		room, lossy := c.t.makeRoom(now)
		if !room {
			return refuse(LimitSources)
		}
		if lossy {
			c.dropped++
		}
		e = &entry[netip.Prefix]{key: src, bucket: rate.NewLimiter(limit, burst)}
		c.t.m[src] = e
	} else {
		setBucket(e.bucket, now, limit, burst)
	}
	switch {
	case e.open >= maxConcurrent:
		c.idle(e, now)
		return refuse(LimitConcurrent)
	case !e.bucket.AllowN(now, 1):
		c.idle(e, now)
		return refuse(LimitRate)
	}
	e.open++
	e.used = now
	c.t.unlist(e) // an entry with open connections is never dropped
	c.t.dropOldestIfFull(nil, now)
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		e.open--
		c.idle(e, time.Time{})
	}, nil
}

// idle lists e in the use order if it has no connection open; with a
// non-zero now it also drops the oldest entry if that one is full.
func (c *Conns) idle(e *entry[netip.Prefix], now time.Time) {
	if e.open == 0 {
		c.t.touch(e, now)
		if !now.IsZero() {
			c.t.dropOldestIfFull(e, now)
		}
	}
}

// ConnsStats is what a Conns limiter reports for metrics.
type ConnsStats struct {
	Sources int // sources with state kept now (open connections or a bucket)
	Open    int // connections open, over all sources
	// Dropped counts idle sources that had to go while their bucket was
	// not full: they started again with a full bucket.
	Dropped uint64
}

// Stats returns the limiter's counters.
func (c *Conns) Stats() ConnsStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ConnsStats{Sources: len(c.t.m), Dropped: c.dropped}
	for _, e := range c.t.m {
		s.Open += e.open
	}
	return s
}
