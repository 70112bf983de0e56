package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/cluster"
)

// embeddedCluster is a valid three-node cluster section (this node and two
// routes).
func embeddedCluster() *ClusterConfig {
	return &ClusterConfig{
		Node: "edge1",
		NATS: NATSConfig{Embedded: &EmbeddedNATSConfig{
			Listen:        "127.0.0.31:4222",
			ClusterListen: "127.0.0.31:6222",
			Routes:        []string{"nats://127.0.0.32:6222", "nats://127.0.0.33:6222"},
			StoreDir:      "nats",
		}},
	}
}

func TestValidateCluster(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *Config)
		field   string // "" means: valid
		problem string
	}{
		{"no cluster, file backend (today)", func(c *Config) {}, "", ""},
		{"file backend named", func(c *Config) { c.Audit.Backend = "File" }, "", ""},
		{"unknown backend", func(c *Config) { c.Audit.Backend = "kafka" }, "audit.backend", "file (the default) or jetstream"},
		{"jetstream without cluster", func(c *Config) { c.Audit.Backend = "jetstream" }, "audit.backend", "configure the cluster section"},
		{"jetstream with cluster", func(c *Config) { c.Cluster, c.Audit.Backend = embeddedCluster(), "jetstream" }, "", ""},
		{"jetstream needs no audit.path", func(c *Config) { c.Cluster, c.Audit.Backend, c.Audit.Path = embeddedCluster(), "jetstream", "" }, "", ""},
		{"file backend in a cluster still needs audit.path", func(c *Config) { c.Cluster, c.Audit.Path = embeddedCluster(), "" }, "audit.path", "required"},
		{"embedded cluster", func(c *Config) { c.Cluster = embeddedCluster() }, "", ""},
		{"retention with jetstream", func(c *Config) {
			c.Cluster, c.Audit.Backend, c.Audit.Retention = embeddedCluster(), "jetstream", Duration(2160*time.Hour)
		}, "", ""},
		{"retention with the file backend", func(c *Config) { c.Audit.Retention = Duration(time.Hour) }, "", ""},
		{"negative retention", func(c *Config) {
			c.Cluster, c.Audit.Backend, c.Audit.Retention = embeddedCluster(), "jetstream", Duration(-time.Hour)
		}, "audit.retention", "negative"},
		{"single embedded node", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "solo", NATS: NATSConfig{Embedded: &EmbeddedNATSConfig{StoreDir: "nats"}}}
		}, "", ""},
		{"external cluster", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", NATS: NATSConfig{URL: "nats://10.1.0.7:4222, tls://10.1.0.8:4222", CredentialsFile: "admin.token",
				TLS: NATSTLSConfig{CAFile: "ca.crt", CertFile: "c.crt", KeyFile: "c.key"}}}
		}, "", ""},
		{"no node", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Node = "" }, "cluster.node", "required"},
		{"node with capitals", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Node = "Edge1" }, "cluster.node", "a-z, 0-9 and -"},
		{"node with underscore", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Node = "edge_1" }, "cluster.node", "not a node name"},
		{"node ends with hyphen", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Node = "edge-" }, "cluster.node", "not a node name"},
		{"audit.node equal", func(c *Config) { c.Cluster = embeddedCluster(); c.Audit.Node = "edge1" }, "", ""},
		{"audit.node differs", func(c *Config) { c.Cluster = embeddedCluster(); c.Audit.Node = "edge2" }, "audit.node", "differs from cluster.node"},
		{"neither embedded nor url", func(c *Config) { c.Cluster = &ClusterConfig{Node: "edge1"} }, "cluster.nats", "embedded"},
		{"both embedded and url", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.URL = "nats://10.1.0.7:4222" }, "cluster.nats.url", "not both"},
		{"bad url", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", NATS: NATSConfig{URL: "http://10.1.0.7:4222"}}
		}, "cluster.nats.url", "not a NATS server URL"},
		{"credentials readable by others", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", NATS: NATSConfig{URL: "nats://10.1.0.7:4222", CredentialsFile: "open.token"}}
		}, "cluster.nats.credentials_file", "chmod 600"},
		{"credentials missing", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", NATS: NATSConfig{URL: "nats://10.1.0.7:4222", CredentialsFile: "gone.creds"}}
		}, "cluster.nats.credentials_file", "does not exist"},
		{"tls cert without key", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", NATS: NATSConfig{URL: "tls://10.1.0.7:4222", TLS: NATSTLSConfig{CertFile: "c.crt"}}}
		}, "cluster.nats.tls.key_file", "required with cluster.nats.tls.cert_file"},
		{"credentials with embedded", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.CredentialsFile = "admin.token" }, "cluster.nats.credentials_file", "only used with cluster.nats.url"},
		{"bad listen", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.Listen = "127.0.0.31" }, "cluster.nats.embedded.listen", "not host:port"},
		{"bad cluster_listen", func(c *Config) {
			c.Cluster = embeddedCluster()
			c.Cluster.NATS.Embedded.ClusterListen = "127.0.0.31:99999"
		}, "cluster.nats.embedded.cluster_listen", "invalid port"},
		{"listen equals cluster_listen", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.Listen = "127.0.0.31:6222" }, "cluster.nats.embedded.cluster_listen", "must differ"},
		{"routes without cluster_listen", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.ClusterListen = "" }, "cluster.nats.embedded.cluster_listen", "required with routes"},
		{"route without scheme", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.Routes[1] = "127.0.0.33:6222" }, "cluster.nats.embedded.routes[1]", "nats://HOST:PORT"},
		{"route without port", func(c *Config) {
			c.Cluster = embeddedCluster()
			c.Cluster.NATS.Embedded.Routes[0] = "nats://127.0.0.32"
		}, "cluster.nats.embedded.routes[0]", "not a route URL"},
		{"no store_dir", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.StoreDir = "" }, "cluster.nats.embedded.store_dir", "required"},
		{"store_dir is a file", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.StoreDir = "c.crt" }, "cluster.nats.embedded.store_dir", "not a folder"},
		{"store_dir parent missing", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.NATS.Embedded.StoreDir = "gone/nats" }, "cluster.nats.embedded.store_dir", "parent folder"},
		{"replicas 6", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Replicas = 6 }, "cluster.replicas", "out of range"},
		{"replicas negative", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Replicas = -1 }, "cluster.replicas", "out of range"},
		{"replicas over the embedded nodes", func(c *Config) { c.Cluster = embeddedCluster(); c.Cluster.Replicas = 4 }, "cluster.replicas", "more than the 3 node(s)"},
		{"replicas 3 for a single embedded node", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "solo", Replicas: 3, NATS: NATSConfig{Embedded: &EmbeddedNATSConfig{StoreDir: "nats"}}}
		}, "cluster.replicas", "add routes"},
		{"replicas 5 on an external cluster", func(c *Config) {
			c.Cluster = &ClusterConfig{Node: "edge1", Replicas: 5, NATS: NATSConfig{URL: "nats://10.1.0.7:4222"}}
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt.change, tt.field, tt.problem) })
	}
}

func TestClusterDefaults(t *testing.T) {
	tests := []struct {
		name         string
		cluster      *ClusterConfig
		wantReplicas int
		wantNode     string // audit.node
		wantBackend  string
	}{
		{"no cluster", nil, 0, "", "file"},
		{"three embedded nodes", embeddedCluster(), 3, "edge1", "file"},
		{"single embedded node", &ClusterConfig{Node: "solo", NATS: NATSConfig{Embedded: &EmbeddedNATSConfig{StoreDir: "nats"}}}, 1, "solo", "file"},
		{"external", &ClusterConfig{Node: "edge9", NATS: NATSConfig{URL: "nats://10.1.0.7:4222"}}, 3, "edge9", "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			c.Cluster = tt.cluster
			if errs := c.Validate(); errs != nil {
				t.Fatal(errs)
			}
			if c.Cluster != nil && c.Cluster.Replicas != tt.wantReplicas {
				t.Errorf("replicas %d, want %d", c.Cluster.Replicas, tt.wantReplicas)
			}
			if c.Audit.Node != tt.wantNode || c.Audit.Backend != tt.wantBackend {
				t.Errorf("audit.node %q backend %q, want %q %q", c.Audit.Node, c.Audit.Backend, tt.wantNode, tt.wantBackend)
			}
		})
	}
}

func TestClusterFromYAML(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"rules"} {
		if err := os.Mkdir(filepath.Join(dir, f), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "dialback.secret"), []byte("shared\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "domains: [company.test]\ninside: {listen: [\"127.0.0.10:5269\"], server: \"127.0.0.2:5269\"}\n" +
		"outside: {listen: [\"127.0.0.11:5269\"]}\ndialback: {secret_file: dialback.secret}\npolicy: {rules: rules}\n"
	good := base + `audit:
  backend: jetstream
cluster:
  node: edge1
  nats:
    embedded:
      listen: "127.0.0.31:4222"
      cluster_listen: "127.0.0.31:6222"
      routes: ["nats://127.0.0.32:6222", "nats://127.0.0.33:6222"]
      store_dir: nats
`
	cfg, err := Parse([]byte(good), dir)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := cfg.ClusterNode()
	want := cluster.Config{
		Node: "edge1",
		Embedded: &cluster.EmbeddedConfig{
			Listen:        "127.0.0.31:4222",
			ClusterListen: "127.0.0.31:6222",
			Routes:        []string{"nats://127.0.0.32:6222", "nats://127.0.0.33:6222"},
			StoreDir:      filepath.Join(dir, "nats"),
		},
		Replicas: 3,
	}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("ClusterNode() = %+v %v\nwant %+v", got, ok, want)
	}

	tests := []struct {
		name, doc, field string
	}{
		{"typo in embedded", base + "audit: {path: audit.jsonl}\ncluster: {node: edge1, nats: {embeded: {store_dir: nats}}}\n", "cluster.nats.embeded"},
		{"replicas as a word", base + "audit: {path: audit.jsonl}\ncluster:\n  node: edge1\n  replicas: three\n  nats: {url: \"nats://10.1.0.7:4222\"}\n", "cluster.replicas"},
		{"jetstream without cluster", base + "audit: {backend: jetstream, path: audit.jsonl}\n", "audit.backend"},
		// Generated per node, the secrets would differ.
		{"cluster without its dialback secret", strings.Replace(good, "secret_file: dialback.secret", "secret_file: missing.secret", 1), "dialback.secret_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), dir)
			fe, ok := err.(FieldErrors)
			if !ok || len(fe) == 0 || fe[0].Field != tt.field {
				t.Fatalf("got %v, want a problem with %s first", err, tt.field)
			}
		})
	}

	noCluster, err := Parse([]byte(base+"audit: {path: audit.jsonl}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := noCluster.ClusterNode(); ok {
		t.Fatal("ClusterNode() without a cluster section: ok")
	}
}
