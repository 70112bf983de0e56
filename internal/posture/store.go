package posture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Seen is a posture seen at a time on a session.
type Seen struct {
	Posture
	At      time.Time `json:"at"`
	Session string    `json:"session,omitempty"`
}

// Entry is what the store knows of one partner domain.
type Entry struct {
	Best Seen  `json:"best"`           // the best in each dimension (At: when it was last raised)
	Last *Seen `json:"last,omitempty"` // the last session seen since this start (not kept in the file)
}

// Observation is what one session's posture meant for its partner.
type Observation struct {
	Previous  Posture  // the best recorded before (zero: first seen)
	First     bool     // no posture was recorded for the domain
	Raised    bool     // the best recorded was raised (and written)
	Downgrade []string // the dimensions the session is weaker in; empty: none
	Best      Posture  // the best recorded now
}

// Reason says what the observation means, for the audit record.
func (o Observation) Reason(seen Posture) string {
	switch {
	case len(o.Downgrade) > 0:
		return "posture downgrade: this session " + seen.String() + ", best seen " + o.Previous.String() + " (" + describe(o.Downgrade) + ")"
	case o.First:
		return "first posture recorded: " + seen.String()
	default:
		return "posture raised: " + o.Best.String() + " (was " + o.Previous.String() + ")"
	}
}

// Store keeps the best posture seen per partner domain. Safe for
// concurrent use.
type Store struct {
	path    string // "" : in memory only
	mu      sync.Mutex
	entries map[string]*Entry
}

// fileFormat is the state file: version 1, the best posture per domain.
type fileFormat struct {
	Version int             `json:"version"`
	Best    map[string]Seen `json:"best"`
}

// Open reads the state file at path (a missing file is an empty store;
// path "" keeps the store in memory). A file that cannot be read or
// parsed is an error: the caller refuses to start rather than forget.
func Open(path string) (*Store, error) {
	s := &Store{path: path, entries: map[string]*Entry{}}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("posture state %s cannot be read (fix its permissions): %w", path, err)
	}
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		if err == nil {
			err = fmt.Errorf("version %d, want 1", f.Version)
		}
		return nil, fmt.Errorf("posture state %s is damaged (restore it from a backup, or remove it to start with no posture recorded; the audit log keeps the posture.raised records): %w", path, err)
	}
	for d, seen := range f.Best {
		s.entries[strings.ToLower(d)] = &Entry{Best: seen}
	}
	return s, nil
}

// Path is the state file ("" in memory).
func (s *Store) Path() string { return s.path }

// Observe records the posture of a session of domain and reports what it
// meant. When the best was raised the state file is written; err is a
// failed write (the store keeps the posture in memory).
func (s *Store) Observe(domain string, p Posture, session string, now time.Time) (Observation, error) {
	domain = strings.ToLower(domain)
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := Seen{Posture: p, At: now.UTC(), Session: session}
	e, ok := s.entries[domain]
	if !ok {
		s.entries[domain] = &Entry{Best: seen, Last: &seen}
		return Observation{First: true, Raised: true, Best: p}, s.writeLocked()
	}
	o := Observation{Previous: e.Best.Posture, Downgrade: Weaker(p, e.Best.Posture)}
	e.Last = &seen
	if !Stronger(p, e.Best.Posture) {
		o.Best = e.Best.Posture
		return o, nil
	}
	e.Best = Seen{Posture: Best(e.Best.Posture, p), At: seen.At, Session: session}
	o.Raised, o.Best = true, e.Best.Posture
	return o, s.writeLocked()
}

// Snapshot returns a copy of every entry, by domain.
func (s *Store) Snapshot() map[string]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Entry, len(s.entries))
	for d, e := range s.entries {
		c := Entry{Best: e.Best}
		if e.Last != nil {
			l := *e.Last
			c.Last = &l
		}
		out[d] = c
	}
	return out
}

// writeLocked writes the state file atomically: a temporary file in the
// same folder, synced, renamed over the old one.
func (s *Store) writeLocked() error {
	if s.path == "" {
		return nil
	}
	f := fileFormat{Version: 1, Best: make(map[string]Seen, len(s.entries))}
	for d, e := range s.entries {
		f.Best[d] = e.Best
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("posture state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("posture state %s cannot be written (is its folder writable?): %w", s.path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	if _, err = tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("posture state %s cannot be written: %w", s.path, err)
	}
	return nil
}
