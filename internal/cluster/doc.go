// Package cluster owns a node's connection to the cluster's NATS JetStream:
// the embedded NATS server (when the node runs one), the nats.go client,
// readiness and health. What the cluster shares (the audit stream, the
// certificate and session key-value buckets) is built by other packages on
// the JetStream this package hands out; this package knows nothing of XMPP.
//
// # The model
//
// A deployment is a set of interchangeable xmppedge nodes. Each node either
// runs a NATS server in its own process (Config.Embedded, the default way:
// the nodes' servers route to one another and form one JetStream cluster
// named "xmppedge"), or connects to a NATS cluster the operator already runs
// (Config.URL). Start returns a Node with a connected client in both cases;
// Close drains the client and stops the embedded server. Connect is the
// client side alone, for tools such as the CLI: it connects to the node's
// embedded server at its client address (or to the URL) and starts none.
//
// A JetStream cluster can serve requests only once its servers have elected
// a meta leader (a few seconds after the first servers meet). Until then a
// JetStream call blocks until its deadline. WaitReady retries a cheap call
// with short per-attempt timeouts until one succeeds, so a node starts
// relaying only once the cluster can take its writes. Healthy answers the
// same question later (for /readyz), cached for a second.
//
// Config mirrors the cluster section of the configuration file
// (internal/config converts it); its zero values are documented on each
// field. Streams created by other packages should use Node.Replicas.
package cluster
