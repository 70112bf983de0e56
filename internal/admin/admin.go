package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/posture"
)

// Source is what the API administers: in practice the running gateway.
type Source interface {
	// SessionsJSON returns the current sessions as a value encoding/json can
	// marshal; a []Session is the expected shape.
	SessionsJSON() any
	// CloseSession closes the session with the id and reports whether there
	// was one.
	CloseSession(id string) bool
	// Reload re-reads the configuration, policy and certificates and applies
	// them without dropping established sessions. On error the running
	// configuration is kept; the error may join several problems
	// (errors.Join), each reported on its own line.
	Reload() error
}

// Actions written in audit records and log lines: what was done.
const (
	ActionList   = "sessions.list"
	ActionClose  = "session.close"
	ActionReload = "reload"
	// ActionPartners lists the partners' sessions and postures.
	ActionPartners = "partners.list"
)

// Decisions of admin audit records.
const (
	decisionDone    = audit.DecisionAllow // authenticated and done
	decisionRefused = audit.DecisionDeny  // not authenticated
	decisionFailed  = "error"             // authenticated, but it failed
)

// Session is the JSON shape of one session expected from
// Source.SessionsJSON.
type Session struct {
	ID         string    `json:"id"`
	Leg        string    `json:"leg"`       // inside | outside
	Direction  string    `json:"direction"` // incoming (peer connected to us) | outgoing
	Local      []string  `json:"local"`     // our domain(s) on the stream
	Remote     []string  `json:"remote"`    // the authenticated peer domain(s)
	RemoteAddr string    `json:"remote_addr"`
	TLSVersion string    `json:"tls_version,omitempty"` // empty when not encrypted
	Auth       string    `json:"auth,omitempty"`        // sasl_external | dialback
	PeerCert   string    `json:"peer_certificate,omitempty"`
	StanzasIn  uint64    `json:"stanzas_in"`
	StanzasOut uint64    `json:"stanzas_out"`
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
	Started    time.Time `json:"started"`
	AgeSeconds float64   `json:"age_seconds"`
	// Bidi: the peer uses this incoming stream both ways (XEP-0288).
	Bidi bool `json:"bidi,omitempty"`
	// Over: this outgoing direction writes on the incoming stream with
	// this id rather than on a connection of its own.
	Over string `json:"over,omitempty"`
}

// PartnerState is the JSON shape of one remote domain in GET
// /admin/partners: its sessions on this node and the postures seen.
type PartnerState struct {
	Domain   string        `json:"domain"`
	Partner  string        `json:"partner,omitempty"` // the partner entry (pattern) it falls under; "" none
	Sessions int           `json:"sessions"`          // streams of the outside leg authenticated for it
	Best     *posture.Seen `json:"best_posture,omitempty"`
	Last     *posture.Seen `json:"last_posture,omitempty"` // since this node started
}

// Funcs adapts plain functions to a Source. A nil function makes its
// endpoint answer 501 Not Implemented.
type Funcs struct {
	Sessions func() any
	Close    func(id string) bool
	ReloadFn func() error
	// Partners returns the partners' state ([]PartnerState) for GET
	// /admin/partners; nil: 501.
	Partners func() any
}

// SessionsJSON calls f.Sessions.
func (f Funcs) SessionsJSON() any { return f.Sessions() }

// CloseSession calls f.Close.
func (f Funcs) CloseSession(id string) bool { return f.Close(id) }

// Reload calls f.ReloadFn.
func (f Funcs) Reload() error { return f.ReloadFn() }

// implemented reports whether the Funcs behind src (if any) provide the
// endpoint's function.
func implemented(src Source, action string) bool {
	f, ok := src.(Funcs)
	if !ok {
		return true
	}
	switch action {
	case ActionList:
		return f.Sessions != nil
	case ActionClose:
		return f.Close != nil
	case ActionPartners:
		return f.Partners != nil
	default:
		return f.ReloadFn != nil
	}
}

// Options configure the endpoints.
type Options struct {
	// Auth authenticates every request; required.
	Auth *Auth
	// Audit receives a record of every action and every refused
	// attempt; nil: none are audited (tests). With a sink, an action
	// is answered only once its record is stored (as durably as the log
	// is configured), and a state-changing action is refused while the
	// log cannot store records.
	Audit audit.Sink
	// Logger receives a line per action and refused attempt; nil: not
	// logged.
	Logger *slog.Logger
}

// api serves the endpoints.
type api struct {
	src  Source
	auth *Auth
	aud  audit.Sink
	log  *slog.Logger

	refusals refusalBudget
}

// Refused attempts are recorded one by one up to refusalsPerWindow per
// refusalWindow; beyond, they are counted, and the count goes with the
// next recorded refusal. Whoever can reach the listener cannot fill the
// audit disk (which would stop the relay: the log fails closed).
const (
	refusalsPerWindow = 60
	refusalWindow     = time.Minute
)

// refusalBudget bounds the records of refused attempts.
type refusalBudget struct {
	mu         sync.Mutex
	now        func() time.Time // time.Now; tests set a clock
	start      time.Time        // of the current window
	n          int              // recorded in the current window
	suppressed int              // not recorded since the last recorded one
}

// take reports whether a refusal may be recorded now and, if so, how many
// were not recorded before it.
func (b *refusalBudget) take() (ok bool, suppressed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.start) >= refusalWindow || now.Before(b.start) {
		b.start, b.n = now, 0
	}
	if b.n >= refusalsPerWindow {
		b.suppressed++
		return false, 0
	}
	b.n++
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// Register adds the admin endpoints to mux. It refuses without
// authentication (opt.Auth).
func Register(mux *http.ServeMux, src Source, opt Options) error {
	if opt.Auth == nil {
		return errors.New("admin: the admin API needs authentication: configure metrics.admin_token_file or metrics.client_ca")
	}
	a := &api{src: src, auth: opt.Auth, aud: opt.Audit, log: opt.Logger}
	a.refusals.now = time.Now
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	csrf := http.NewCrossOriginProtection()
	mux.Handle("GET /admin/sessions", a.guard(ActionList, a.list))
	mux.Handle("GET /admin/partners", a.guard(ActionPartners, a.partners))
	mux.Handle("POST /admin/sessions/{id}/close", csrf.Handler(a.guard(ActionClose, a.close)))
	mux.Handle("POST /reload", csrf.Handler(a.guard(ActionReload, a.reload)))
	return nil
}

// guard authenticates the request before next; a refused attempt is
// audited and logged.
func (a *api) guard(action string, next func(w http.ResponseWriter, r *http.Request, actor string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, refusal := a.auth.identify(r)
		if refusal == "" {
			next(w, r, actor)
			return
		}
		if ok, suppressed := a.refusals.take(); ok {
			target := r.PathValue("id")
			if suppressed > 0 {
				refusal += fmt.Sprintf("; %d more refused attempt(s) before this one were not recorded one by one (more than %d a minute)", suppressed, refusalsPerWindow)
			}
			a.log.Warn("admin: request refused", "action", action, "session", target, "reason", refusal, "remote_addr", r.RemoteAddr)
			if a.aud != nil {
				// Not waited for: an unauthenticated client must not be
				// able to hold requests open on the disk.
				if _, err := a.aud.Append(a.record(r, ActorUnauthenticated, action, target, decisionRefused, refusal)); err != nil {
					a.log.Error("admin: the refused request could not be audited", "action", action, "err", err)
				}
			}
		}
		a.auth.refuse(w, r)
	})
}

func (a *api) record(r *http.Request, actor, action, target, decision, reason string) *audit.Record {
	return &audit.Record{
		Event: audit.EventAdmin, Actor: actor, Action: action, Target: target,
		RemoteAddr: r.RemoteAddr, Decision: decision, Reason: reason,
	}
}

// audit stores the record of an authenticated action and logs it. An
// error means the record is not stored.
func (a *api) audit(r *http.Request, actor, action, target, decision, reason string) error {
	level := slog.LevelInfo
	if decision != decisionDone {
		level = slog.LevelWarn
	}
	a.log.Log(r.Context(), level, "admin: "+action, "actor", actor, "session", target, "result", decision, "reason", reason, "remote_addr", r.RemoteAddr)
	if a.aud == nil {
		return nil
	}
	seq, err := a.aud.Append(a.record(r, actor, action, target, decision, reason))
	if err == nil {
		// The action happened: its record is waited for even if the
		// client goes away.
		err = a.aud.WaitDurable(context.WithoutCancel(r.Context()), seq)
	}
	if err != nil {
		a.log.Error("admin: the action could not be audited", "actor", actor, "action", action, "session", target, "err", err)
		return fmt.Errorf("the audit record could not be written: %w", err)
	}
	return nil
}

// auditReady refuses a state-changing action (503) while the audit log
// cannot store its record.
func (a *api) auditReady(w http.ResponseWriter, r *http.Request, actor, action, target string) bool {
	if a.aud == nil {
		return true
	}
	if err := a.aud.Healthy(); err != nil {
		a.log.Error("admin: action refused: the audit log cannot store its record", "actor", actor, "action", action, "session", target, "remote_addr", r.RemoteAddr, "err", err)
		writeText(w, http.StatusServiceUnavailable, "refused: the audit log cannot store records ("+oneLine(err.Error())+"); nothing was done\n")
		return false
	}
	return true
}

func (a *api) list(w http.ResponseWriter, r *http.Request, actor string) {
	a.listing(w, r, actor, ActionList, "sessions", a.src.SessionsJSON)
}

// PartnerSource is a Source that lists the partners' state too (Funcs
// does); GET /admin/partners answers 501 for any other.
type PartnerSource interface {
	PartnersJSON() any // a []PartnerState
}

// PartnersJSON calls f.Partners.
func (f Funcs) PartnersJSON() any { return f.Partners() }

// partners lists the partners' state.
func (a *api) partners(w http.ResponseWriter, r *http.Request, actor string) {
	ps, ok := a.src.(PartnerSource)
	if !ok {
		writeText(w, http.StatusNotImplemented, "listing partners is not available\n")
		return
	}
	a.listing(w, r, actor, ActionPartners, "partners", ps.PartnersJSON)
}

// listing answers a read-only listing: what value returns, as JSON, once
// the listing is on record.
func (a *api) listing(w http.ResponseWriter, r *http.Request, actor, action, what string, value func() any) {
	if !implemented(a.src, action) {
		writeText(w, http.StatusNotImplemented, "listing "+what+" is not available\n")
		return
	}
	body, err := json.MarshalIndent(value(), "", "  ")
	if err != nil {
		a.log.Error("admin: encoding the "+what+" failed", "err", err)
		_ = a.audit(r, actor, action, "", decisionFailed, "encoding the "+what+" failed: "+err.Error())
		writeText(w, http.StatusInternalServerError, "encoding the "+what+" failed: "+err.Error()+"\n")
		return
	}
	// Read only, so the record comes first: nothing is shown unless the
	// listing is on record.
	if err := a.audit(r, actor, action, "", decisionDone, ""); err != nil {
		writeText(w, http.StatusServiceUnavailable, "refused: "+oneLine(err.Error())+"\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

func (a *api) close(w http.ResponseWriter, r *http.Request, actor string) {
	if !implemented(a.src, ActionClose) {
		writeText(w, http.StatusNotImplemented, "closing sessions is not available\n")
		return
	}
	id := r.PathValue("id")
	if !a.auditReady(w, r, actor, ActionClose, id) {
		return
	}
	if !a.src.CloseSession(id) {
		msg := "no session with id " + oneLine(id)
		if err := a.audit(r, actor, ActionClose, id, decisionFailed, msg); err != nil {
			msg += "; " + err.Error()
		}
		writeText(w, http.StatusNotFound, msg+" (list them with GET /admin/sessions)\n")
		return
	}
	if err := a.audit(r, actor, ActionClose, id, decisionDone, ""); err != nil {
		writeText(w, http.StatusInternalServerError, "closed, but "+oneLine(err.Error())+"\n")
		return
	}
	writeText(w, http.StatusOK, "closed\n")
}

func (a *api) reload(w http.ResponseWriter, r *http.Request, actor string) {
	if !implemented(a.src, ActionReload) {
		writeText(w, http.StatusNotImplemented, "reload is not available\n")
		return
	}
	if !a.auditReady(w, r, actor, ActionReload, "") {
		return
	}
	if err := a.src.Reload(); err != nil {
		body := errorLines(err)
		if aerr := a.audit(r, actor, ActionReload, "", decisionFailed, "rejected, the running configuration is kept: "+strings.TrimSpace(strings.ReplaceAll(body, "\n", "; "))); aerr != nil {
			body += aerr.Error() + "\n"
		}
		writeText(w, http.StatusInternalServerError, body)
		return
	}
	if err := a.audit(r, actor, ActionReload, "", decisionDone, ""); err != nil {
		writeText(w, http.StatusInternalServerError, "reloaded, but "+oneLine(err.Error())+"\n")
		return
	}
	writeText(w, http.StatusOK, "reloaded\n")
}

// errorLines returns err's message one problem per line: errors.Join (and
// config.FieldErrors) already put each problem on its own line.
func errorLines(err error) string {
	var b strings.Builder
	for line := range strings.Lines(err.Error()) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return "reload failed\n"
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
