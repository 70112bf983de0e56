package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/certs/natsstore"
	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
	"github.com/xmppedge/xmppedge/internal/cluster"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/sessiondir"
)

// clusterStartBound bounds the start of this node's part of the cluster:
// the embedded NATS server, the connection and the first JetStream
// leader (DESIGN §6: about 2.3 s with three embedded servers on
// loopback; the others may start later, so wait longer).
const clusterStartBound = 2 * time.Minute

// startCluster starts this node's part of the cluster (the embedded NATS
// server, or a client of an external cluster) and waits until JetStream
// answers. nil without a cluster section.
func startCluster(ctx context.Context, cfg *config.Config, log *slog.Logger) (*cluster.Node, error) {
	ccfg, ok := cfg.ClusterNode()
	if !ok {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, clusterStartBound)
	defer cancel()
	node, err := cluster.Start(ctx, ccfg, log.With("component", "cluster"))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := node.WaitReady(ctx); err != nil {
		node.Close()
		return nil, fmt.Errorf("cluster: JetStream did not become ready within %v (are the other nodes' NATS servers up and cluster.nats routes right?): %w", clusterStartBound, err)
	}
	return node, nil
}

// sharedACMEStorage is certmagic's storage for a cluster: one JetStream
// key-value bucket, so that the nodes make one ACME order per domain. The
// nodes that start together create it at once: wait for it, within a
// bound.
func sharedACMEStorage(ctx context.Context, node *cluster.Node) (*natsstore.Storage, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterStartBound)
	defer cancel()
	s, err := natsstore.New(ctx, node.JetStream(), natsstore.Config{Replicas: node.Replicas()})
	if err != nil {
		return nil, fmt.Errorf("tls.acme with cluster: %w", err)
	}
	return s, nil
}

// startSessionDirectory publishes this node's sessions to the cluster's
// directory and answers requests to close them.
func (n *node) startSessionDirectory(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterStartBound)
	defer cancel()
	d, err := sessiondir.Start(ctx, n.cluster.Conn(), n.cluster.JetStream(), sessiondir.Config{
		Node: n.cluster.Name(), Replicas: n.cluster.Replicas(),
	}, localSessions{n}, n.log.With("component", "sessiondir"))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	n.dir = d
	return nil
}

// localSessions is this node's part of the directory: its own sessions as
// the admin API shows them.
type localSessions struct{ n *node }

func (l localSessions) Sessions() []admin.Session   { return adminSessions(l.n.gw.Sessions()) }
func (l localSessions) CloseSession(id string) bool { return l.n.gw.CloseSession(id) }

// Reload reloads this node because another one did (and is not
// announced again).
func (l localSessions) Reload(origin string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := l.n.reload(ctx)
	if err != nil {
		l.n.log.Error("reload asked by another node rejected: the running configuration stays active", "origin", origin, "err", err)
	}
	l.n.auditReload(ctx, "cluster node "+origin, err)
}

// adminSource is what the admin API administers: this node's sessions, or
// with a cluster the whole cluster's (listed from the directory, closed
// on whichever node holds them).
func (n *node) adminSource() admin.Funcs {
	f := admin.Funcs{
		Sessions: func() any { return adminSessions(n.gw.Sessions()) },
		Close:    n.gw.CloseSession,
		ReloadFn: func() error { return n.reloadAnnounced(context.Background()) },
		Partners: n.partnerStates, // this node's
	}
	if n.dir == nil {
		return f
	}
	f.Sessions = func() any {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		entries, err := n.dir.Sessions(ctx)
		if err != nil {
			n.log.Warn("the cluster's session directory cannot be read: listing this node's sessions only", "err", err)
			local := adminSessions(n.gw.Sessions())
			out := make([]sessiondir.Entry, 0, len(local))
			for _, s := range local {
				out = append(out, sessiondir.Entry{Node: n.cluster.Name(), Session: s})
			}
			return out
		}
		return entries
	}
	f.Close = func(id string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed, err := n.dir.CloseSession(ctx, id)
		if err != nil {
			n.log.Warn("closing a session on another node failed", "session", id, "err", err)
		}
		return closed
	}
	return f
}

// watchClusterMetrics exports the quorum and, with the JetStream audit
// backend, the stream's acknowledgements.
func (n *node) watchClusterMetrics() {
	src := metrics.ClusterSource{Healthy: n.cluster.Healthy}
	if s, ok := n.alog.(*jsaudit.Sink); ok {
		src.AuditStream = func() (uint64, uint64, uint64) {
			return s.LastSeq(), s.DurableSeq(), s.Stats().Failures
		}
	}
	n.m.WatchCluster(src)
}

// printClusterSummary adds the cluster's lines to the start-up summary.
func (n *node) printClusterSummary(w io.Writer) {
	if n.cluster == nil {
		return
	}
	var peers []string
	for _, p := range n.cluster.Peers() {
		peers = append(peers, p.Name)
	}
	fmt.Fprintf(w, "  cluster: node %s, %d replicas, peers: %s\n", n.cluster.Name(), n.cluster.Replicas(), strings.Join(peersOrNone(peers), ", "))
}

func peersOrNone(p []string) []string {
	if len(p) == 0 {
		return []string{"none yet"}
	}
	return p
}
