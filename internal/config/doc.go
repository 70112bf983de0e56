// Package config reads xmppedge's YAML configuration file, strictly.
//
// # The model
//
// One file describes one node: the local domains (served by the internal XMPP
// server), the inside leg (where the internal server connects, and where
// xmppedge delivers inbound traffic), the outside leg (the listeners facing
// the Internet), DNS, TLS material, the dialback secret, limits and logging.
// Every node of a deployment can use the same file.
//
// Load and Parse do three things in order:
//
//  1. Parse the YAML strictly. A syntax error is returned at once, naming the
//     line. Unknown keys are not ignored: each becomes a FieldError naming
//     the setting, its line and, when a known setting is close, the one that
//     was probably meant ("inside.listn: unknown setting on line 3 (did you
//     mean \"listen\"?)"). Values of the wrong type (a word where a number
//     belongs, a duration without a unit) are reported the same way.
//  2. Apply defaults to everything left out (see ApplyDefaults).
//  3. Validate the whole configuration, normalising as it goes (domains to
//     lowercase A-labels, DNS servers to IP:PORT), and report every problem
//     at once as FieldErrors, so an operator fixes the file in one pass.
//
// Relative file names in the file are relative to the file's folder (Dir);
// ResolvePath turns them into usable paths. Validation checks that the files
// it needs exist, except the dialback secret, which xmppedge creates on first
// start (its folder must exist), and that files holding secrets
// (audit.hmac_key_file, metrics.admin_token_file) cannot be read by group or
// others. What needs the files' content (certificates that load, keys that
// fit, the policy that compiles, the dialback secret, the audit chain) is
// checked by the command (cmd/xmppedge's prepare), the same way for
// `xmppedge check` and `xmppedge run`.
//
// metrics.admin requires authentication (metrics.admin_token_file, or
// metrics.client_ca with metrics.tls_cert_file and metrics.tls_key_file);
// inside.dns_allow (default inside.allow) bounds who the DNS responder
// answers; limits.* bound connections per source address and stanzas per
// remote domain.
//
// The cluster section (optional) makes the node one of several
// interchangeable nodes sharing NATS JetStream: cluster.node names it,
// cluster.nats runs a NATS server inside the node (embedded) or reaches an
// external cluster (url), cluster.replicas sizes the shared streams.
// ClusterNode converts the section for package internal/cluster. Without it
// the node stands alone, exactly as before. audit.backend chooses where
// audit records go: file (default) or jetstream, which needs the cluster
// section; in a cluster audit.node defaults to, and must equal,
// cluster.node.
package config
