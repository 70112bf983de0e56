package natsstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/jsretry"
)

// Config configures a Storage.
type Config struct {
	// Bucket is the key-value bucket's name (default "xmppedge_certs").
	Bucket string
	// Replicas is how many copies the bucket keeps (default 1; a cluster
	// uses its replicas setting).
	Replicas int
	// LockTTL is how long a lock lives without a renewal (default 2m).
	LockTTL time.Duration
	// LockPoll is how often Lock retries while the lock is held elsewhere
	// (default 1s).
	LockPoll time.Duration
}

// Storage implements certmagic.Storage and certmagic.LockLeaseRenewer.
type Storage struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	stream string // the bucket's stream, "KV_<bucket>"
	prefix string // "$KV.<bucket>." for raw publishes and reads
	cfg    Config
	owner  string // this process's identity in lock values

	mu    sync.Mutex
	locks map[string]uint64 // lock key → revision we hold (the fencing token)
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New opens (creating it if needed) the bucket and returns its Storage.
// While JetStream cannot answer (right after a cluster starts, with every
// node creating the bucket at once, a request may time out) it tries
// again until ctx ends: give ctx a deadline.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Storage, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "xmppedge_certs"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 2 * time.Minute
	}
	if cfg.LockPoll <= 0 {
		cfg.LockPoll = time.Second
	}
	stream := "KV_" + cfg.Bucket
	kv, err := openBucket(ctx, js, stream, jetstream.KeyValueConfig{
		Bucket:   cfg.Bucket,
		Replicas: cfg.Replicas,
		Storage:  jetstream.FileStorage,
		History:  1,
		// Per-key TTLs (locks) need the bucket to allow them.
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("natsstore: open the key-value bucket %s: %w", cfg.Bucket, err)
	}
	var id [8]byte
	rand.Read(id[:])
	return &Storage{
		kv: kv, js: js, stream: stream, prefix: "$KV." + cfg.Bucket + ".", cfg: cfg,
		owner: hex.EncodeToString(id[:]), locks: make(map[string]uint64),
	}, nil
}

// attemptTimeout bounds a read whose ctx has no deadline.
const attemptTimeout = 5 * time.Second

// openAttemptTimeout bounds one attempt at opening the bucket: short, as
// the audit sink's first calls are, so that nodes starting together open
// it within a second or so of each other once a leader exists (the first
// call before that blocks for its whole timeout).
const openAttemptTimeout = 2 * time.Second

// openBucket creates or opens the bucket and returns it once it answers a
// read, trying again every 250 ms until ctx ends while the failure may be
// the cluster's state (a timeout, no JetStream yet, a server error, no
// replica answering reads yet); a refusal of the configuration is final.
func openBucket(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, openAttemptTimeout)
		kv, err := js.CreateOrUpdateKeyValue(actx, cfg)
		if err == nil {
			// A replicated bucket just created may not answer reads yet:
			// certmagic's first Load would fail.
			if _, err = readLast(actx, js.Conn(), stream, "$KV."+cfg.Bucket+".ready"); errors.Is(err, errNoValue) {
				err = nil
			}
		}
		cancel()
		if err == nil || !jsretry.Transient(err) {
			return kv, err
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// errNoValue says that a key has no value (never written, deleted or
// purged).
var errNoValue = errors.New("no value")

// value is a key's value and when it was written.
type value struct {
	data    []byte
	written time.Time
}

// readLast reads the last message of subject in stream from the stream's
// leader (the STREAM.MSG.GET API), never from a replica: the bucket allows
// direct gets (jetstream's KeyValue.Get uses them), which any replica
// answers, one that has not applied an acknowledged write yet too, and
// certmagic reads what it or another node has just written (its storage
// check; after taking a lock, whether the node that held it stored the
// certificate; a challenge's key authorization on the node the CA
// reaches). A stale answer there fails a start or a validation, or makes
// a second order.
func readLast(ctx context.Context, nc *nats.Conn, stream, subject string) (*value, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
	}
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return nil, err
	}
	msg, err := nc.RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Header []byte    `json:"hdrs"`
			Data   []byte    `json:"data"`
			Time   time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("reading %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, errNoValue
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, fmt.Errorf("reading %s: the answer has no message", subject)
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", subject, err)
		}
		// jetstream's delete and purge markers.
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, errNoValue
		}
	}
	return &value{data: resp.Message.Data, written: resp.Message.Time}, nil
}

// escapeSegment writes one path segment as a NATS key token.
func escapeSegment(b *strings.Builder, seg string) {
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
}

// keyOf is the NATS key of a certmagic path under root ("data" or
// "locks"). Empty segments (a leading, trailing or doubled slash) are
// dropped: certmagic does not tell them apart.
func keyOf(root, path string) (string, error) {
	var b strings.Builder
	b.WriteString(root)
	n := 0
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		b.WriteByte('.')
		escapeSegment(&b, seg)
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("natsstore: empty key %q", path)
	}
	return b.String(), nil
}

// pathOf is the certmagic path of a NATS key under root.
func pathOf(root, key string) (string, error) {
	rest, ok := strings.CutPrefix(key, root+".")
	if !ok {
		return "", fmt.Errorf("natsstore: key %q is not under %s", key, root)
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		switch c := rest[i]; c {
		case '.':
			b.WriteByte('/')
		case '=':
			if i+2 >= len(rest) {
				return "", fmt.Errorf("natsstore: bad escape in key %q", key)
			}
			v, err := hex.DecodeString(rest[i+1 : i+3])
			if err != nil {
				return "", fmt.Errorf("natsstore: bad escape in key %q: %w", key, err)
			}
			b.WriteByte(v[0])
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Store puts value under key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	k, err := keyOf("data", key)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, k, value); err != nil {
		return fmt.Errorf("natsstore: store %s: %w", key, err)
	}
	return nil
}

// Load returns the value under key; fs.ErrNotExist when there is none.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return e.data, nil
}

func (s *Storage) get(ctx context.Context, key string) (*value, error) {
	k, err := keyOf("data", key)
	if err != nil {
		return nil, err
	}
	e, err := readLast(ctx, s.js.Conn(), s.stream, s.prefix+k)
	if errors.Is(err, errNoValue) {
		return nil, fmt.Errorf("natsstore: %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("natsstore: load %s: %w", key, err)
	}
	return e, nil
}

// Delete removes key and, when key is a "directory", everything under it.
func (s *Storage) Delete(ctx context.Context, key string) error {
	keys, err := s.keysUnder(ctx, key, true)
	if err != nil {
		return err
	}
	if k, err := keyOf("data", key); err == nil {
		keys = append(keys, k)
	}
	found := false
	for _, k := range keys {
		if _, err := readLast(ctx, s.js.Conn(), s.stream, s.prefix+k); err != nil {
			continue
		}
		found = true
		if err := s.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("natsstore: delete %s: %w", key, err)
		}
	}
	if !found {
		return fmt.Errorf("natsstore: delete %s: %w", key, fs.ErrNotExist)
	}
	return nil
}

// Exists reports whether key (or anything under it) exists.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	if _, err := s.get(ctx, key); err == nil {
		return true
	}
	keys, err := s.keysUnder(ctx, key, true)
	return err == nil && len(keys) > 0
}

// keysUnder lists the NATS keys below path (recursive: at any depth).
func (s *Storage) keysUnder(ctx context.Context, path string, recursive bool) ([]string, error) {
	root := "data"
	if strings.Trim(path, "/") != "" {
		var err error
		if root, err = keyOf("data", path); err != nil {
			return nil, err
		}
	}
	filter := root + ".*"
	if recursive {
		filter = root + ".>"
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("natsstore: list %s: %w", path, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// List returns the keys under path: at any depth when recursive, else the
// direct children (items and "directories").
func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := s.keysUnder(ctx, path, true)
	if err != nil {
		return nil, err
	}
	base := strings.Trim(path, "/")
	seen := make(map[string]bool)
	var out []string
	for _, k := range keys {
		p, err := pathOf("data", k)
		if err != nil {
			return nil, err
		}
		if !recursive {
			rest := strings.TrimPrefix(strings.TrimPrefix(p, base), "/")
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				p = strings.TrimSuffix(base+"/"+rest[:i], "/")
				p = strings.TrimPrefix(p, "/")
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("natsstore: list %s: %w", path, fs.ErrNotExist)
	}
	return out, nil
}

// Stat describes key.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	e, err := s.get(ctx, key)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: e.written, Size: int64(len(e.data)), IsTerminal: true}, nil
	}
	if keys, lerr := s.keysUnder(ctx, key, true); lerr == nil && len(keys) > 0 {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, err
}

// Lock takes the lock name, waiting while another holder has it.
func (s *Storage) Lock(ctx context.Context, name string) error {
	k, err := keyOf("locks", name)
	if err != nil {
		return err
	}
	for {
		rev, err := s.kv.Create(ctx, k, []byte(s.owner), jetstream.KeyTTL(s.cfg.LockTTL))
		if err == nil {
			s.mu.Lock()
			s.locks[k] = rev
			s.mu.Unlock()
			return nil
		}
		if !heldElsewhere(err) {
			return fmt.Errorf("natsstore: lock %s: %w", name, err)
		}
		t := time.NewTimer(s.cfg.LockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("natsstore: lock %s: held elsewhere: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// heldElsewhere reports whether Create failed because another holder has
// the key, or took it first: after a release, contenders that read the
// same delete marker each try to replace it, and jetstream returns the
// losers' bare "wrong last sequence" (code 10164 on a replicated bucket),
// not ErrKeyExists.
func heldElsewhere(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// RenewLockLease gives the lock we hold a fresh TTL; it fails when the
// lock is no longer ours (expired and taken over).
func (s *Storage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	k, err := keyOf("locks", name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	rev, ok := s.locks[k]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("natsstore: renew %s: not locked here", name)
	}
	ack, err := s.js.Publish(ctx, s.prefix+k, []byte(s.owner),
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(lease))
	if err != nil {
		return fmt.Errorf("natsstore: renew %s: the lock is no longer ours: %w", name, err)
	}
	s.mu.Lock()
	s.locks[k] = ack.Sequence
	s.mu.Unlock()
	return nil
}

// Unlock releases the lock if it is still ours.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	k, err := keyOf("locks", name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	rev, ok := s.locks[k]
	delete(s.locks, k)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("natsstore: unlock %s: not locked here", name)
	}
	if err := s.kv.Purge(ctx, k, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("natsstore: unlock %s: %w", name, err)
	}
	return nil
}
