package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/xmppedge/xmppedge/internal/cluster"
)

// Audit backends.
const (
	AuditBackendFile      = "file"      // the hash-chained JSON Lines file (audit.path)
	AuditBackendJetStream = "jetstream" // the cluster's replicated stream (needs cluster)
	DefaultAuditBackend   = AuditBackendFile
)

var (
	auditBackends   = []string{AuditBackendFile, AuditBackendJetStream}
	nodeNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	natsURLSchemes  = []string{"nats", "tls", "ws", "wss"}
)

// ClusterConfig makes this node one of a cluster of interchangeable nodes
// sharing NATS JetStream (package internal/cluster). Left out, the node
// stands alone and keeps everything in files.
type ClusterConfig struct {
	// Node is this node's unique name ([a-z0-9-], at most 63 characters):
	// in every audit record and session id. Required. audit.node defaults
	// to it.
	Node string `yaml:"node"`
	// NATS is where the cluster's JetStream runs: embedded (a NATS server in
	// this node, the default way) or url (an external NATS cluster).
	NATS NATSConfig `yaml:"nats"`
	// Replicas of the shared streams and buckets, 1 to 5; default 3, or 1
	// for a single embedded node without routes. With embedded NATS it
	// cannot exceed the number of nodes (1 + len(routes)).
	Replicas int `yaml:"replicas"`
}

// NATSConfig chooses the NATS servers: exactly one of Embedded and URL.
type NATSConfig struct {
	// Embedded runs a NATS server with JetStream inside this node.
	Embedded *EmbeddedNATSConfig `yaml:"embedded"`
	// URL is an external NATS cluster: comma-separated server URLs,
	// like "nats://10.1.0.7:4222,nats://10.1.0.8:4222".
	URL string `yaml:"url"`
	// CredentialsFile is a NATS credentials file for URL (chmod 600).
	CredentialsFile string `yaml:"credentials_file"`
	// TLS are the PEM files for a TLS connection to URL.
	TLS NATSTLSConfig `yaml:"tls"`
}

// EmbeddedNATSConfig is the NATS server run inside this node.
type EmbeddedNATSConfig struct {
	// Listen is the NATS client address (host:port) for the CLI and other
	// tools; this node's own client connects in-process. Empty: none.
	Listen string `yaml:"listen"`
	// ClusterListen is the route address (host:port) the other nodes'
	// servers connect to. Needed with Routes.
	ClusterListen string `yaml:"cluster_listen"`
	// Routes are the other nodes' cluster_listen addresses as URLs
	// ("nats://10.1.0.6:6222"). Every node may list all nodes: a route to
	// itself is ignored.
	Routes []string `yaml:"routes"`
	// StoreDir is JetStream's data folder (created if missing; its parent
	// must exist). Required.
	StoreDir string `yaml:"store_dir"`
}

// NATSTLSConfig are PEM files for TLS to an external NATS cluster.
type NATSTLSConfig struct {
	CAFile   string `yaml:"ca_file"`   // roots that verify the servers; default the system's
	CertFile string `yaml:"cert_file"` // client certificate; needs key_file
	KeyFile  string `yaml:"key_file"`  // its private key
}

func (c *Config) applyClusterDefaults() {
	if c.Audit.Backend == "" {
		c.Audit.Backend = DefaultAuditBackend
	}
	cl := c.Cluster
	if cl == nil {
		return
	}
	if c.Audit.Node == "" {
		c.Audit.Node = cl.Node
	}
	if cl.Replicas == 0 {
		cl.Replicas = cluster.DefaultReplicas
		if e := cl.NATS.Embedded; e != nil && len(e.Routes) == 0 {
			cl.Replicas = 1
		}
	}
}

func (c *Config) validateCluster(v *validator) {
	c.Audit.Backend = strings.ToLower(strings.TrimSpace(c.Audit.Backend))
	switch {
	case !slices.Contains(auditBackends, c.Audit.Backend):
		v.add("audit.backend", "%q is not an audit backend: use file (the default) or jetstream (needs the cluster section)", c.Audit.Backend)
	case c.Audit.Backend == AuditBackendJetStream && c.Cluster == nil:
		v.add("audit.backend", "jetstream needs a cluster: configure the cluster section (cluster.node, cluster.nats), or use backend: file")
	}
	c.validateRetention(v)
	cl := c.Cluster
	if cl == nil {
		return
	}
	switch {
	case cl.Node == "":
		v.add("cluster.node", "required: this node's unique name, like edge1 (a-z, 0-9 and -)")
	case !nodeNamePattern.MatchString(cl.Node):
		v.add("cluster.node", "%q is not a node name: use 1 to 63 of a-z, 0-9 and -, not starting or ending with -, like edge1", cl.Node)
	case c.Audit.Node != cl.Node:
		v.add("audit.node", "%q differs from cluster.node %q: leave audit.node out (it defaults to cluster.node) or make them equal", c.Audit.Node, cl.Node)
	}
	n := &cl.NATS
	switch {
	case n.Embedded == nil && n.URL == "":
		v.add("cluster.nats", "required: configure cluster.nats.embedded (a NATS server in this node) or cluster.nats.url (an external NATS cluster)")
	case n.Embedded != nil && n.URL != "":
		v.add("cluster.nats.url", "choose one: cluster.nats.embedded or cluster.nats.url, not both")
	case n.Embedded != nil:
		c.validateEmbeddedNATS(v, n.Embedded)
		if n.CredentialsFile != "" {
			v.add("cluster.nats.credentials_file", "only used with cluster.nats.url; remove it (the embedded server needs none)")
		}
		if n.TLS != (NATSTLSConfig{}) {
			v.add("cluster.nats.tls", "only used with cluster.nats.url; remove it")
		}
	default:
		c.validateNATSURL(v, n)
	}
	if cl.Replicas < 1 || cl.Replicas > cluster.MaxReplicas {
		v.add("cluster.replicas", "%d is out of range: give 1 to %d; the default is %d (1 for a single embedded node)", cl.Replicas, cluster.MaxReplicas, cluster.DefaultReplicas)
	} else if e := n.Embedded; e != nil && n.URL == "" && cl.Replicas > 1+len(e.Routes) {
		v.add("cluster.replicas", "%d is more than the %d node(s) of the embedded cluster (this one and %d in cluster.nats.embedded.routes): lower it or add routes", cl.Replicas, 1+len(e.Routes), len(e.Routes))
	}
}

func (c *Config) validateEmbeddedNATS(v *validator, e *EmbeddedNATSConfig) {
	const f = "cluster.nats.embedded"
	if e.Listen != "" {
		if _, problem := parseHostPort(e.Listen, true); problem != "" {
			v.add(f+".listen", "%s", problem)
		}
	}
	if e.ClusterListen != "" {
		if _, problem := parseHostPort(e.ClusterListen, true); problem != "" {
			v.add(f+".cluster_listen", "%s", problem)
		} else if e.ClusterListen == e.Listen {
			v.add(f+".cluster_listen", "%q is also cluster.nats.embedded.listen: the client and route ports must differ (usually 4222 and 6222)", e.ClusterListen)
		}
	} else if len(e.Routes) > 0 {
		v.add(f+".cluster_listen", "required with routes: the address the other nodes' routes connect to, like \"10.1.0.5:6222\"")
	}
	for i, r := range e.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			v.add(fmt.Sprintf("%s.routes[%d]", f, i), "%q is not a route URL: write nats://HOST:PORT, like \"nats://10.1.0.6:6222\"", r)
		}
	}
	if e.StoreDir == "" {
		v.add(f+".store_dir", "required: JetStream's data folder, like /var/lib/xmppedge/nats")
		return
	}
	dir := c.ResolvePath(e.StoreDir)
	if info, err := os.Stat(dir); err == nil {
		if !info.IsDir() {
			v.add(f+".store_dir", "%s is not a folder", dir)
		}
	} else if info, err := os.Stat(filepath.Dir(dir)); err != nil || !info.IsDir() {
		v.add(f+".store_dir", "%s does not exist, nor does its parent folder: create the parent (the data folder itself is created on first start)", dir)
	}
}

func (c *Config) validateNATSURL(v *validator, n *NATSConfig) {
	for _, s := range strings.Split(n.URL, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil || !slices.Contains(natsURLSchemes, u.Scheme) || u.Hostname() == "" {
			v.add("cluster.nats.url", "%q is not a NATS server URL: write nats://HOST:PORT (or tls://, ws://, wss://), several separated by commas", s)
			break
		}
	}
	if n.CredentialsFile != "" {
		path := c.ResolvePath(n.CredentialsFile)
		if problem := c.fileProblem(n.CredentialsFile); problem != "" {
			v.add("cluster.nats.credentials_file", "%s", problem)
		} else if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			v.add("cluster.nats.credentials_file", "%s can be read by other users: run chmod 600 %s", path, path)
		}
	}
	t := n.TLS
	for _, f := range []struct{ field, name string }{
		{"cluster.nats.tls.ca_file", t.CAFile}, {"cluster.nats.tls.cert_file", t.CertFile}, {"cluster.nats.tls.key_file", t.KeyFile},
	} {
		if f.name != "" {
			if problem := c.fileProblem(f.name); problem != "" {
				v.add(f.field, "%s", problem)
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.add("cluster.nats.tls.key_file", "required with cluster.nats.tls.cert_file: the client certificate's private key")
	case t.KeyFile != "" && t.CertFile == "":
		v.add("cluster.nats.tls.cert_file", "required with cluster.nats.tls.key_file: the client certificate")
	}
}

// ClusterNode returns the cluster section as the cluster package's Config,
// with paths resolved against Dir, and false when the file has no cluster
// section (a node on its own). Call it on a validated Config.
func (c *Config) ClusterNode() (cluster.Config, bool) {
	cl := c.Cluster
	if cl == nil {
		return cluster.Config{}, false
	}
	out := cluster.Config{
		Node:            cl.Node,
		URL:             cl.NATS.URL,
		CredentialsFile: c.ResolvePath(cl.NATS.CredentialsFile),
		TLS: cluster.TLSFiles{
			CAFile:   c.ResolvePath(cl.NATS.TLS.CAFile),
			CertFile: c.ResolvePath(cl.NATS.TLS.CertFile),
			KeyFile:  c.ResolvePath(cl.NATS.TLS.KeyFile),
		},
		Replicas: cl.Replicas,
	}
	if e := cl.NATS.Embedded; e != nil {
		out.Embedded = &cluster.EmbeddedConfig{
			Listen:        e.Listen,
			ClusterListen: e.ClusterListen,
			Routes:        slices.Clone(e.Routes),
			StoreDir:      c.ResolvePath(e.StoreDir),
		}
	}
	return out, true
}
