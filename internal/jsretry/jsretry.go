// Package jsretry says which JetStream errors pass by themselves while a
// cluster forms or elects a leader (DESIGN §6), so that the first calls
// of the replicated audit, the certificate storage and the session
// directory try again rather than fail a node's start.
package jsretry

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// errNoPeers is "no suitable peers for placement" (a 400): while a
// cluster forms, the meta leader may not know enough servers yet for the
// replicas asked.
const errNoPeers jetstream.ErrorCode = 10005

// Transient reports whether err may go away once the cluster has formed
// and has a leader — timeouts, no responders, server errors, too few
// known peers — as opposed to a refusal (a configuration the server
// rejects), which is final.
func Transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || apiErr.Code == 408 || apiErr.ErrorCode == errNoPeers
	}
	return true
}
