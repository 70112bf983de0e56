package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
)

// Actors written in audit records and log lines: who acted.
const (
	// ActorBearerToken is a request that presented the bearer token
	// (there is one token, so it names no person; the record's remote_addr
	// says where it came from).
	ActorBearerToken = "bearer token"
	// ActorUnauthenticated is a refused request.
	ActorUnauthenticated = "unauthenticated"
	// ActorCertificatePrefix starts the actor of a request with a verified
	// client certificate; the certificate's subject DN follows, e.g.
	// "client certificate CN=alice,OU=ops,O=Company".
	ActorCertificatePrefix = "client certificate "
)

// MinTokenLen is the shortest bearer token LoadToken and NewAuth accept.
const MinTokenLen = 16

// maxTokenFile bounds what LoadToken reads.
const maxTokenFile = 4096

// AuthConfig chooses how administrators authenticate. At least one of the
// two is required; with both, either admits a request.
type AuthConfig struct {
	// Token is the bearer token: a request sends "Authorization: Bearer
	// TOKEN". Empty: no token is accepted.
	Token string
	// ClientCertificates admits a request that came with a client
	// certificate the TLS layer verified (see ServerTLSConfig): its
	// subject is the actor.
	ClientCertificates bool
}

// Auth authenticates admin requests. It is safe for concurrent use; the
// token can be replaced while requests are served (SetToken).
type Auth struct {
	tokenAuth  bool
	clientCert bool
	// token is the SHA-256 of the bearer token: comparing digests in
	// constant time also hides the token's length.
	token atomic.Pointer[[sha256.Size]byte]
}

// NewAuth checks c and returns the authenticator.
func NewAuth(c AuthConfig) (*Auth, error) {
	if c.Token == "" && !c.ClientCertificates {
		return nil, errors.New("admin: no authentication configured: give a bearer token (metrics.admin_token_file) or accept client certificates (metrics.client_ca)")
	}
	a := &Auth{clientCert: c.ClientCertificates}
	if c.Token != "" {
		a.tokenAuth = true
		if err := a.SetToken(c.Token); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// SetToken replaces the bearer token (a reload re-reads the token file).
// It is an error when the Auth was made without a token, or when token is
// not a valid bearer token.
func (a *Auth) SetToken(token string) error {
	if !a.tokenAuth {
		return errors.New("admin: bearer tokens are not enabled: a token added to the configuration takes effect at the next start")
	}
	if problem := tokenProblem(token); problem != "" {
		return fmt.Errorf("admin: the bearer token %s", problem)
	}
	sum := sha256.Sum256([]byte(token))
	a.token.Store(&sum)
	return nil
}

// tokenProblem says what is wrong with a bearer token, without quoting it.
func tokenProblem(token string) string {
	if len(token) < MinTokenLen {
		return fmt.Sprintf("has %d characters: use at least %d, e.g. from `openssl rand -hex 32`", len(token), MinTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if !isTokenChar(token[i]) {
			return fmt.Sprintf("holds a character other than letters, digits and -._~+/= at position %d: write it on one line, e.g. from `openssl rand -hex 32`", i+1)
		}
	}
	return ""
}

// isTokenChar reports whether c may appear in a bearer token (RFC 6750
// b64token).
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

// LoadToken reads a bearer token file: a regular file that group and
// others cannot access (mode 0600 or stricter), holding one token of at
// least MinTokenLen characters (white space around it is ignored). Its
// errors name the file and the fix, never the token.
func LoadToken(path string) (string, error) {
	// Check the type before opening: opening a FIFO would block.
	if info, err := os.Stat(path); err == nil && !info.Mode().IsRegular() {
		return "", fmt.Errorf("admin token file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin token file %s cannot be opened: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("admin token file %s: %w", path, err)
	}
	// Windows has no Unix permission bits worth checking.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s has mode %04o and can be read by group or others: run chmod 600 %s", path, info.Mode().Perm(), path)
	}
	if info.Size() > maxTokenFile {
		return "", fmt.Errorf("admin token file %s is %d bytes, more than the %d a token file may hold: write the token alone on one line", path, info.Size(), maxTokenFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return "", fmt.Errorf("admin token file %s cannot be read: %w", path, err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("admin token file %s is empty: write a token into it, e.g. `openssl rand -hex 32 > %s`", path, path)
	}
	if problem := tokenProblem(token); problem != "" {
		return "", fmt.Errorf("the token in admin token file %s %s", path, problem)
	}
	return token, nil
}

// ServerTLSConfig is the TLS configuration of a listener that serves the
// admin API over HTTPS with cert. With clientCAs, a client certificate is
// asked for and, when one is sent, verified against clientCAs (a
// certificate that does not verify fails the handshake); it is not
// required, so that /metrics and the health endpoints are reachable
// without one. Without clientCAs no client certificate is asked for (a nil
// pool would otherwise mean the system's roots). The caller may harden it
// further (versions, suites).
func ServerTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.NoClientCert,
	}
	if clientCAs != nil {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = clientCAs
	}
	return cfg
}

// identify returns who sent r, or why r is refused.
func (a *Auth) identify(r *http.Request) (actor, refusal string) {
	if a.clientCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return ActorCertificatePrefix + r.TLS.VerifiedChains[0][0].Subject.String(), ""
	}
	h := r.Header.Get("Authorization")
	switch {
	case h == "" && a.clientCert && !a.tokenAuth:
		return "", "no verified client certificate"
	case h == "":
		return "", "no credentials"
	case !a.tokenAuth:
		return "", "an Authorization header, but only client certificates are accepted"
	}
	scheme, cred, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "the Authorization header is not a bearer token"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	want := a.token.Load()
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
		return "", "wrong bearer token"
	}
	return ActorBearerToken, ""
}

// refuse answers a request identify refused: 401 with a Bearer challenge
// when tokens are accepted, else 403 (no HTTP scheme covers client
// certificates).
func (a *Auth) refuse(w http.ResponseWriter, r *http.Request) {
	if a.tokenAuth {
		challenge := `Bearer realm="xmppedge admin"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		msg := "authentication required: send Authorization: Bearer TOKEN (the token of metrics.admin_token_file)"
		if a.clientCert {
			msg += ", or a client certificate issued by metrics.client_ca"
		}
		writeText(w, http.StatusUnauthorized, msg+"\n")
		return
	}
	writeText(w, http.StatusForbidden, "a client certificate issued by metrics.client_ca is required\n")
}
