// Package sessiondir is the cluster's directory of sessions: every node
// publishes its streams in a NATS JetStream key-value bucket, so that the
// admin API of any node lists the whole cluster's sessions, and closes a
// session on whichever node holds it (a NATS request to that node).
//
// # Model
//
// Each node keeps one key per session, "s.<node>.<session id>", holding
// the session as the admin API shows it (admin.Session plus the node).
// The node re-publishes its keys every Config.Refresh with a per-message
// TTL of Config.TTL (the bucket allows per-key TTLs), and deletes the key
// of a session that ended. A node that dies stops refreshing: its keys
// expire within TTL, so the directory never lists a dead node's sessions
// for long. Session ids are unique in the cluster because the relay
// prefixes them with the node's name.
//
// Closing: the directory finds the node in the session's key and sends
// a request on "xmppedge.sessions.close.<node>" with the id; that node
// closes the session through its Local and answers whether it existed.
//
// Reloading: a node that reloaded its configuration and policy announces
// it on "xmppedge.cluster.reload" (AnnounceReload); every other node
// reloads its own (Local.Reload) and cuts what its new policy refuses,
// so a partner removed is cut on every node. Announcements are not
// repeated.
//
// The bucket is on file storage: a node that restarts keeps its replica,
// where a memory replica would have to be rebuilt — which, with another
// node down, did not happen and left the restarted node unable to start.
package sessiondir
