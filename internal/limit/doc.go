// Package limit owns the limits that keep one noisy or hostile peer from
// starving the others: stanza rates per key (a remote domain and
// direction) and connections per source address on the outside listeners.
//
// # Model
//
// Both limits are token buckets (golang.org/x/time/rate) kept in a table
// of bounded size. Nothing runs in the background and nothing reads a
// clock: every call carries the time it is made at, so tests drive the
// limits with an injected clock and a reload may change a rate or burst on
// the very next call.
//
// [Rates] keeps one bucket per key. [Rates.Allow] takes one token from the
// key's bucket, creating it full the first time the key is seen.
//
// [Conns] keeps, per source, the number of connections open and a bucket
// for new connections. Sources are IPv4 addresses and IPv6 /64 prefixes:
// a single IPv6 host is commonly given a whole /64, so counting single
// IPv6 addresses would let one host open a connection from each of 2^64
// addresses. IPv4-mapped IPv6 addresses count as their IPv4 address; zones
// are ignored. [Conns.Acquire] checks the concurrent limit first (a
// refused connection takes no token), then the rate; the release function
// it returns gives the connection back and may be called any number of
// times.
//
// # Memory
//
// Each table holds at most the number of entries it was made with, however
// many distinct keys or sources appear. Entries are kept in least recently
// used order. A bucket that has refilled (is full) carries no state: a new
// bucket would be the same, so such entries are dropped first when room is
// needed, and every call drops the least recently used entry if it is full
// and has not been used for a minute, so a table whose keys went quiet
// shrinks without a sweeper goroutine (and a key in steady use is not
// dropped and allocated again). When the table is full and no
// recently checked entry is full, the least recently used entry is dropped
// anyway: its key starts again with a full bucket. This trades some
// precision for never refusing an unseen key merely because many others
// were busy. The exceptions are sources with open connections: their
// counts are never dropped, and when every entry of a [Conns] table has an
// open connection a new source is refused ([LimitSources]); size the table
// above the node's connection cap and that cannot happen.
//
// # Limits that are not positive
//
// A rate of +Inf (or rate.Inf) lifts the rate limit: [Rates.Allow] then
// lets everything through without creating an entry, [Conns.Acquire]
// still counts concurrent connections. A rate or burst of zero or less, or
// NaN, lets nothing through, and so does a concurrent limit of zero or
// less: a broken setting fails closed. The callers resolve defaults (edge.Limits) before calling.
package limit
