package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterName is the name of the NATS cluster the embedded servers form;
// servers route only to servers of the same cluster name.
const ClusterName = "xmppedge"

// Defaults and bounds.
const (
	// DefaultReplicas is the replica count of shared streams in a cluster.
	DefaultReplicas = 3
	// MaxReplicas is JetStream's own limit.
	MaxReplicas = 5
	// DefaultStartTimeout bounds how long Start waits for the embedded
	// server to accept connections.
	DefaultStartTimeout = 10 * time.Second

	attemptTimeout = 500 * time.Millisecond // one JetStream call in WaitReady and Healthy
	healthCacheFor = time.Second
	drainTimeout   = 5 * time.Second
)

var nodeNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Config describes how a node joins the cluster. Exactly one of Embedded
// and URL must be set.
type Config struct {
	// Node is this node's unique name ([a-z0-9-], at most 63 characters):
	// the embedded server's name, the client's name, and the name in every
	// audit record and session id. Required.
	Node string

	// Embedded, when not nil, runs a NATS server with JetStream inside
	// this node.
	Embedded *EmbeddedConfig

	// URL is an external NATS cluster's comma-separated server URLs
	// ("nats://a:4222,nats://b:4222"); used when Embedded is nil.
	URL string
	// CredentialsFile is a NATS credentials file (JWT and seed) for URL;
	// empty means no credentials.
	CredentialsFile string
	// TLS are the PEM files used to connect to URL; the zero value means
	// the URL's scheme decides (tls:// uses the system roots).
	TLS TLSFiles

	// Replicas is the replica count of the shared streams and buckets
	// (1..5). Zero means DefaultReplicas, or 1 for an embedded node
	// without routes.
	Replicas int

	// StartTimeout bounds how long Start waits for the embedded server to
	// accept connections and for the client to connect. Zero means
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// EmbeddedConfig is the NATS server run inside a node.
type EmbeddedConfig struct {
	// Listen is the client address ("host:port"; port 0: any free port)
	// for other NATS clients, such as the CLI. The node's own client
	// connects in-process. Empty means the server accepts no network
	// clients.
	Listen string
	// ClusterListen is the route address ("host:port") the other nodes'
	// servers connect to. Empty means no cluster: a single node.
	ClusterListen string
	// Routes are the other nodes' route URLs ("nats://host:6222"). A route
	// to this node itself is ignored by the server. Needs ClusterListen.
	Routes []string
	// StoreDir is where JetStream keeps its data. Required.
	StoreDir string
}

// TLSFiles are PEM files for a TLS connection to an external cluster.
type TLSFiles struct {
	CAFile   string // roots that verify the servers; empty: the system's
	CertFile string // client certificate; needs KeyFile
	KeyFile  string // its private key
}

// effectiveReplicas applies the Replicas default.
func (c Config) effectiveReplicas() int {
	if c.Replicas != 0 {
		return c.Replicas
	}
	if c.Embedded != nil && len(c.Embedded.Routes) == 0 {
		return 1
	}
	return DefaultReplicas
}

// check reports the first problem with c, naming the field.
func (c Config) check() error {
	if !nodeNamePattern.MatchString(c.Node) {
		return fmt.Errorf("cluster: node %q is not a node name: use 1 to 63 of a-z, 0-9 and -, not starting or ending with -", c.Node)
	}
	switch {
	case c.Embedded == nil && c.URL == "":
		return errors.New("cluster: neither nats.embedded nor nats.url is set: configure one")
	case c.Embedded != nil && c.URL != "":
		return errors.New("cluster: both nats.embedded and nats.url are set: configure one")
	}
	if r := c.effectiveReplicas(); r < 1 || r > MaxReplicas {
		return fmt.Errorf("cluster: replicas %d is out of range 1..%d", r, MaxReplicas)
	}
	if e := c.Embedded; e != nil {
		if e.StoreDir == "" {
			return errors.New("cluster: nats.embedded.store_dir is required")
		}
		if len(e.Routes) > 0 && e.ClusterListen == "" {
			return errors.New("cluster: nats.embedded.routes needs nats.embedded.cluster_listen")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("cluster: nats.tls.cert_file and nats.tls.key_file go together")
	}
	return nil
}

// Node is this node's membership in the cluster: the embedded server, if
// any, and the client connection. Its methods are safe for concurrent use.
type Node struct {
	cfg      Config
	replicas int
	log      *slog.Logger
	srv      *server.Server // nil with an external cluster
	nc       *nats.Conn
	js       jetstream.JetStream
	closed   chan struct{} // closed by the client's ClosedHandler

	closeOnce sync.Once

	healthMu    sync.Mutex
	healthAt    time.Time
	healthErr   error
	healthProbe chan struct{} // non-nil while a probe runs
}

// Start runs the embedded server (if cfg.Embedded is set) and connects the
// client. It does not wait for the JetStream cluster to elect a leader: call
// WaitReady for that. The logger may be nil (discard).
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cluster", "node", cfg.Node)
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	n := &Node{cfg: cfg, replicas: cfg.effectiveReplicas(), log: log, closed: make(chan struct{})}

	opts := n.clientOptions("xmppedge-"+cfg.Node, timeout)
	url := cfg.URL
	if cfg.Embedded != nil {
		srv, err := startServer(ctx, cfg, timeout, log)
		if err != nil {
			return nil, err
		}
		n.srv = srv
		url = ""
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		opts = append(opts, cfg.externalOptions()...)
	}
	nc, err := connect(ctx, url, opts)
	if err != nil {
		n.stopServer()
		if cfg.Embedded != nil {
			return nil, fmt.Errorf("cluster: cannot connect to the embedded NATS server: %w", err)
		}
		return nil, fmt.Errorf("cluster: cannot connect to nats.url %s: %w", cfg.URL, err)
	}
	if err := n.attach(nc); err != nil {
		return nil, err
	}
	log.Info("joined the NATS cluster", "embedded", cfg.Embedded != nil, "server", nc.ConnectedUrlRedacted(), "replicas", n.replicas)
	return n, nil
}

// clientOptions are the options of the node's client connection, named
// name: reconnect for ever, log connection changes, close n.closed.
func (n *Node) clientOptions(name string, timeout time.Duration) []nats.Option {
	log := n.log
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.DrainTimeout(drainTimeout),
		nats.Timeout(timeout),
		nats.ClosedHandler(func(*nats.Conn) { close(n.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS connection restored", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "err", err) }),
	}
}

// externalOptions are the credentials and TLS options for Config.URL.
func (c Config) externalOptions() []nats.Option {
	var opts []nats.Option
	if c.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
	}
	return opts
}

// Connect connects to the cluster as a client only, as a tool such as the
// CLI does on a node's host: with Config.URL, to those servers with the
// configured credentials and TLS; with Config.Embedded, to the node's
// embedded server at its client address (Embedded.Listen; a wildcard
// host means this host's loopback). It never starts a server. The
// returned Node has no server: Peers lists the client's servers, Close
// drains the client. Call WaitReady before the first JetStream call.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cluster", "node", cfg.Node, "client", true)
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	url := cfg.URL
	var opts []nats.Option
	if e := cfg.Embedded; e != nil {
		u, err := embeddedClientURL(e.Listen)
		if err != nil {
			return nil, err
		}
		url = u
	} else {
		opts = cfg.externalOptions()
	}
	n := &Node{cfg: cfg, replicas: cfg.effectiveReplicas(), log: log, closed: make(chan struct{})}
	opts = append(n.clientOptions("xmppedge-cli-"+cfg.Node, timeout), opts...)
	opts = append(opts, nats.RetryOnFailedConnect(false))
	nc, err := connect(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: cannot connect to NATS at %s: %w", url, err)
	}
	if err := n.attach(nc); err != nil {
		return nil, err
	}
	log.Debug("connected to the NATS cluster as a client", "server", nc.ConnectedUrlRedacted())
	return n, nil
}

// embeddedClientURL is the URL a client on this host uses to reach an
// embedded server listening on listen.
func embeddedClientURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("cluster: nats.embedded.listen is empty: the node's NATS server accepts no network clients; set it (like 127.0.0.1:4222) to connect from the command line")
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("cluster: nats.embedded.listen: %w", err)
	}
	if port == 0 {
		return "", fmt.Errorf("cluster: nats.embedded.listen %q has port 0 (any free port): give the port to connect to it", listen)
	}
	switch ip := net.ParseIP(host); {
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// connect runs nats.Connect so that ctx can abandon it (the client then
// closes in the background).
func connect(ctx context.Context, url string, opts []nats.Option) (*nats.Conn, error) {
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		ch <- result{nc, err}
	}()
	select {
	case r := <-ch:
		return r.nc, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// startServer runs the embedded NATS server and waits until it accepts
// connections.
func startServer(ctx context.Context, cfg Config, timeout time.Duration, log *slog.Logger) (*server.Server, error) {
	e := cfg.Embedded
	o := &server.Options{
		ServerName: cfg.Node,
		JetStream:  true,
		StoreDir:   e.StoreDir,
		NoSigs:     true,
		DontListen: e.Listen == "",
	}
	if e.Listen != "" {
		host, port, err := splitHostPort(e.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster: nats.embedded.listen: %w", err)
		}
		o.Host, o.Port = host, anyPort(port)
	}
	if e.ClusterListen != "" {
		host, port, err := splitHostPort(e.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("cluster: nats.embedded.cluster_listen: %w", err)
		}
		o.Cluster = server.ClusterOpts{Name: ClusterName, Host: host, Port: anyPort(port)}
		for _, r := range e.Routes {
			u := server.RoutesFromStr(r)
			if len(u) != 1 || u[0].Host == "" {
				return nil, fmt.Errorf("cluster: nats.embedded.routes: %q is not a route URL like nats://10.0.0.2:6222", r)
			}
			o.Routes = append(o.Routes, u[0])
		}
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: cannot configure the embedded NATS server (nats.embedded): %w", err)
	}
	srv.SetLoggerV2(&serverLog{log: log.With("nats", "server")}, log.Enabled(ctx, slog.LevelDebug), false, false)
	srv.Start() // returns once the listeners run in their goroutines

	deadline := time.Now().Add(timeout)
	for !srv.ReadyForConnections(200 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("cluster: the embedded NATS server did not start: %w", ctx.Err())
			}
			return nil, fmt.Errorf("cluster: the embedded NATS server did not accept connections within %s; check nats.embedded.listen and cluster_listen (are the addresses free and local?) and store_dir", timeout)
		}
	}
	return srv, nil
}

// anyPort maps port 0 (any free port, as elsewhere in xmppedge) to the NATS
// server's spelling of it; the server reads 0 as its default port.
func anyPort(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has an invalid port", s)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Conn is the client connection (plain NATS: request/reply, subjects).
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream is the JetStream context on Conn.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Name is this node's name (Config.Node).
func (n *Node) Name() string { return n.cfg.Node }

// Replicas is the replica count for shared streams and buckets
// (Config.Replicas with its default applied).
func (n *Node) Replicas() int { return n.replicas }

// WaitReady returns once a JetStream call succeeds, that is once the
// cluster has a meta leader and this node reaches it, or with ctx's error
// (wrapped) when ctx ends first. Each attempt is bounded by a short
// timeout, so that a call sent before the election does not hold on until
// ctx's deadline.
func (n *Node) WaitReady(ctx context.Context) error {
	start := time.Now()
	lastLog := start
	for attempt := 1; ; attempt++ {
		err := n.probe(ctx)
		if err == nil {
			n.setHealth(nil)
			n.log.Info("JetStream ready", "after", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: JetStream not ready after %s (%d attempts; last: %v): %w", time.Since(start).Round(time.Millisecond), attempt, err, ctx.Err())
		}
		if attempt == 1 || time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			n.log.Info("waiting for the JetStream cluster to elect a leader", "waited", time.Since(start).Round(time.Millisecond), "last", err)
		} else {
			n.log.Debug("JetStream not ready yet", "attempt", attempt, "err", err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// probe is one cheap JetStream call (account info, answered by the meta
// leader in a cluster), bounded by attemptTimeout.
func (n *Node) probe(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	_, err := n.js.AccountInfo(actx)
	return err
}

// Healthy returns nil when JetStream answers now (in a cluster: a meta
// leader is elected and reachable, and, when this node's embedded server is
// the leader, a quorum of servers was heard from in the last few seconds),
// else why not. The answer is cached for
// a second and concurrent callers share one probe; a call takes at most
// about half a second.
func (n *Node) Healthy() error {
	n.healthMu.Lock()
	if time.Since(n.healthAt) < healthCacheFor {
		err := n.healthErr
		n.healthMu.Unlock()
		return err
	}
	if wait := n.healthProbe; wait != nil {
		n.healthMu.Unlock()
		<-wait
		n.healthMu.Lock()
		err := n.healthErr
		n.healthMu.Unlock()
		return err
	}
	done := make(chan struct{})
	n.healthProbe = done
	n.healthMu.Unlock()

	var err error
	select {
	case <-n.closed:
		err = errors.New("cluster: node closed")
	default:
		if perr := n.probe(context.Background()); perr != nil {
			err = fmt.Errorf("cluster: JetStream unavailable (no meta leader reachable within %s): %w", attemptTimeout, perr)
		} else {
			err = n.leaderQuorum()
		}
	}
	n.setHealth(err)
	n.healthMu.Lock()
	n.healthProbe = nil
	n.healthMu.Unlock()
	close(done)
	return err
}

// peerSeenWithin is how recently the meta leader must have heard from a
// peer to count it towards a quorum in Healthy (the raft heartbeat is 1s).
const peerSeenWithin = 5 * time.Second

// leaderQuorum covers what the probe cannot see: a meta leader that lost
// its peers keeps answering for several seconds (until raft's lost-quorum
// check makes it step down). When this node's embedded server is that
// leader, it counts the peers heard from recently.
func (n *Node) leaderQuorum() error {
	if n.srv == nil || !n.srv.JetStreamIsClustered() || !n.srv.JetStreamIsLeader() {
		return nil
	}
	jsz, err := n.srv.Jsz(&server.JSzOptions{LeaderOnly: true})
	if err != nil || jsz.Meta == nil {
		return nil // no longer the leader: the next probe tells
	}
	seen := 1 // this server
	for _, p := range jsz.Meta.Replicas {
		if p != nil && !p.Offline && p.Active <= peerSeenWithin {
			seen++
		}
	}
	if seen < jsz.Meta.QuorumNeeded {
		return fmt.Errorf("cluster: JetStream unavailable: this node is the meta leader but has heard from only %d of %d servers in the last %s (quorum %d)", seen, jsz.Meta.Size, peerSeenWithin, jsz.Meta.QuorumNeeded)
	}
	return nil
}

func (n *Node) setHealth(err error) {
	n.healthMu.Lock()
	n.healthAt, n.healthErr = time.Now(), err
	n.healthMu.Unlock()
}

// Peer is another NATS server this node is connected to.
type Peer struct {
	Name string // the server's name (the node name, for embedded servers)
	Addr string // the far end of the connection (host:port): the peer's route port, or its source address when it dialled
}

// Peers lists the servers routed to the embedded server, sorted by name.
// With an external cluster, it lists the servers the client knows (names
// are not known there, so Name is empty).
func (n *Node) Peers() []Peer {
	var out []Peer
	if n.srv == nil {
		for _, s := range n.nc.Servers() {
			out = append(out, Peer{Addr: strings.TrimPrefix(s, "nats://")})
		}
		return out
	}
	rz, err := n.srv.Routez(nil)
	if err != nil {
		return nil
	}
	seen := map[string]bool{} // a peer has a pool of route connections
	for _, r := range rz.Routes {
		if seen[r.RemoteName] {
			continue
		}
		seen[r.RemoteName] = true
		out = append(out, Peer{Name: r.RemoteName, Addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close drains the client (pending publishes are flushed, bounded by a few
// seconds), shuts the embedded server down and waits until it has stopped.
// It is idempotent.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		if n.nc != nil {
			if err := n.nc.Drain(); err != nil {
				n.nc.Close()
			}
			t := time.NewTimer(drainTimeout + time.Second)
			select {
			case <-n.closed:
			case <-t.C:
				n.nc.Close()
			}
			t.Stop()
		}
		n.stopServer()
		n.log.Info("left the NATS cluster")
	})
}

func (n *Node) stopServer() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// serverLog routes the embedded server's log to slog: notices at Info,
// debug and trace at Debug.
type serverLog struct{ log *slog.Logger }

func (l *serverLog) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *serverLog) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLog) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLog) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// attach makes nc the node's client connection, with its JetStream.
func (n *Node) attach(nc *nats.Conn) error {
	n.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		n.Close()
		return fmt.Errorf("cluster: JetStream client: %w", err)
	}
	n.js = js
	return nil
}
