package sessiondir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/admin"
)

// Local is what this node offers the directory: its own sessions,
// closing one of them, and reloading its configuration and policy when
// another node announces that it reloaded (origin names it).
type Local interface {
	Sessions() []admin.Session
	CloseSession(id string) bool
	Reload(origin string)
}

// Config configures a Directory.
type Config struct {
	Node     string        // this node's name; required ([a-z0-9-])
	Bucket   string        // the key-value bucket (default "xmppedge_sessions")
	Replicas int           // copies of the bucket (default 1)
	Refresh  time.Duration // how often the node re-publishes its sessions (default 10s)
	TTL      time.Duration // how long a key lives without a refresh (default 3 × Refresh)
	Timeout  time.Duration // bound of one request to another node (default 5s)
}

// Entry is one session of the cluster.
type Entry struct {
	Node string `json:"node"`
	admin.Session
}

// Directory is this node's view of the cluster's sessions.
type Directory struct {
	cfg   Config
	kv    jetstream.KeyValue
	js    jetstream.JetStream
	nc    *nats.Conn
	local Local
	log   *slog.Logger
	sub   *nats.Subscription
	rsub  *nats.Subscription // reload announcements

	mu        sync.Mutex
	published map[string]bool // keys this node published in the last round

	cancel context.CancelFunc
	done   chan struct{}
}

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// closeSubject is where a node takes requests to close its sessions.
func closeSubject(node string) string { return "xmppedge.sessions.close." + node }

// reloadSubject is where a node announces that it reloaded.
const reloadSubject = "xmppedge.cluster.reload"

// Start opens the bucket, answers close requests for this node and
// publishes its sessions until Close.
func Start(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config, local Local, log *slog.Logger) (*Directory, error) {
	if !nodeName.MatchString(cfg.Node) {
		return nil, fmt.Errorf("sessiondir: node name %q: use lowercase letters, digits and '-'", cfg.Node)
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "xmppedge_sessions"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * cfg.Refresh
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	kv, err := openBucket(ctx, js, log, jetstream.KeyValueConfig{
		Bucket: cfg.Bucket, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
		History: 1, LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("sessiondir: open the key-value bucket %s: %w", cfg.Bucket, err)
	}
	d := &Directory{cfg: cfg, kv: kv, js: js, nc: nc, local: local, log: log, published: map[string]bool{}, done: make(chan struct{})}
	d.sub, err = nc.Subscribe(closeSubject(cfg.Node), d.answerClose)
	if err != nil {
		return nil, fmt.Errorf("sessiondir: subscribe to close requests: %w", err)
	}
	d.rsub, err = nc.Subscribe(reloadSubject, d.answerReload)
	if err != nil {
		d.sub.Unsubscribe()
		return nil, fmt.Errorf("sessiondir: subscribe to reload announcements: %w", err)
	}
	// The server holds both subscriptions once it answered a round trip:
	// from then on no request or announcement is missed.
	if err := nc.FlushWithContext(ctx); err != nil {
		d.sub.Unsubscribe()
		d.rsub.Unsubscribe()
		return nil, fmt.Errorf("sessiondir: subscribe: %w", err)
	}
	if err := d.publish(ctx); err != nil {
		log.Warn("could not publish this node's sessions to the cluster directory", "err", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(runCtx)
	return d, nil
}

// openBucket creates or opens the bucket, retrying with short attempts
// until ctx ends: right after a cluster starts (or while nodes create the
// bucket at once) the JetStream API may not answer in time (DESIGN §6).
func openBucket(ctx context.Context, js jetstream.JetStream, log *slog.Logger, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for attempt := 1; ; attempt++ {
		// Short attempts: before the cluster has a leader, a call blocks
		// for its whole timeout (DESIGN §6).
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := js.CreateOrUpdateKeyValue(actx, cfg)
		cancel()
		if err == nil {
			return kv, nil
		}
		log.Debug("the session bucket does not answer yet", "bucket", cfg.Bucket, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// AnnounceReload tells the other nodes that this node reloaded its
// configuration and policy: each reloads its own (the same files or the
// same bundle on every node), and cuts the sessions the new policy
// refuses - so a partner removed on one node is cut on every node. A
// reload made on an announcement is not announced again.
func (d *Directory) AnnounceReload() error {
	if err := d.nc.Publish(reloadSubject, []byte(d.cfg.Node)); err != nil {
		return fmt.Errorf("sessiondir: announce the reload: %w", err)
	}
	return d.nc.Flush()
}

// answerReload reloads this node when another one announces a reload.
func (d *Directory) answerReload(m *nats.Msg) {
	origin := string(m.Data)
	if origin == d.cfg.Node || !nodeName.MatchString(origin) {
		return
	}
	d.log.Info("another node reloaded: reloading", "origin", origin)
	go d.local.Reload(origin) // not on NATS's delivery goroutine: a reload takes its time
}

// answerClose closes a session of this node on another node's request.
func (d *Directory) answerClose(m *nats.Msg) {
	answer := "not found"
	if d.local.CloseSession(string(m.Data)) {
		answer = "closed"
	}
	m.Respond([]byte(answer))
}

func (d *Directory) run(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, d.cfg.Refresh)
			if err := d.publish(pctx); err != nil && ctx.Err() == nil {
				d.log.Warn("could not publish this node's sessions to the cluster directory", "err", err)
			}
			cancel()
		}
	}
}

// key is the key of one of this node's sessions.
func (d *Directory) key(id string) string { return "s." + d.cfg.Node + "." + id }

// Refresh publishes this node's sessions now (the directory does it every
// Config.Refresh; a caller may after a change it wants seen at once).
func (d *Directory) Refresh(ctx context.Context) error { return d.publish(ctx) }

// publish puts every current session with a fresh TTL and deletes the keys
// of sessions that ended since the last round.
func (d *Directory) publish(ctx context.Context) error {
	now := map[string]bool{}
	var errs []error
	for _, s := range d.local.Sessions() {
		if strings.ContainsAny(s.ID, ".*> ") || s.ID == "" {
			continue // not a key token; the relay's ids never are
		}
		body, err := json.Marshal(Entry{Node: d.cfg.Node, Session: s})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := d.key(s.ID)
		now[k] = true
		if _, err := d.js.Publish(ctx, "$KV."+d.cfg.Bucket+"."+k, body, jetstream.WithMsgTTL(d.cfg.TTL)); err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", s.ID, err))
		}
	}
	d.mu.Lock()
	gone := make([]string, 0)
	for k := range d.published {
		if !now[k] {
			gone = append(gone, k)
		}
	}
	d.published = now
	d.mu.Unlock()
	for _, k := range gone {
		if err := d.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("delete %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// Sessions lists the cluster's sessions, ordered by node and id.
func (d *Directory) Sessions(ctx context.Context) ([]Entry, error) {
	lister, err := d.kv.ListKeysFiltered(ctx, "s.>")
	if err != nil {
		return nil, fmt.Errorf("sessiondir: list: %w", err)
	}
	var out []Entry
	for k := range lister.Keys() {
		e, err := d.kv.Get(ctx, k)
		if err != nil {
			continue // expired or deleted meanwhile
		}
		var s Entry
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// CloseSession closes the session id wherever it lives; it reports
// whether a node had it.
func (d *Directory) CloseSession(ctx context.Context, id string) (bool, error) {
	if d.local.CloseSession(id) {
		return true, nil
	}
	entries, err := d.Sessions(ctx)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.ID != id || e.Node == d.cfg.Node {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
		reply, err := d.nc.RequestWithContext(rctx, closeSubject(e.Node), []byte(id))
		cancel()
		if err != nil {
			return false, fmt.Errorf("sessiondir: ask node %s to close %s: %w", e.Node, id, err)
		}
		return string(reply.Data) == "closed", nil
	}
	return false, nil
}

// Close stops publishing, deletes this node's keys and stops answering.
func (d *Directory) Close() {
	d.cancel()
	<-d.done
	d.sub.Unsubscribe()
	d.rsub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	defer cancel()
	d.mu.Lock()
	keys := d.published
	d.published = map[string]bool{}
	d.mu.Unlock()
	for k := range keys {
		d.kv.Purge(ctx, k)
	}
}
