package certs

import (
	"crypto/tls"
	"slices"
)

// MinTLSVersion is the oldest TLS version xmppedge speaks, as server or
// client, on either leg (RFC 7590; TLS 1.0 and 1.1 are deprecated by
// RFC 8996).
const MinTLSVersion = tls.VersionTLS12

// TLS12CipherSuites are the only TLS 1.2 cipher suites xmppedge offers or
// accepts: Mozilla's "intermediate" server-side TLS configuration
// (version 5.7) as far as Go implements it — ephemeral ECDH key exchange
// authenticated by ECDSA or RSA, AEAD ciphers only. No CBC, no SHA-1 MAC,
// no static RSA key exchange, no 3DES or RC4. Mozilla's three DHE-RSA
// suites are not implemented by crypto/tls. TLS 1.3 suites are not
// configurable in Go (all three are AEAD) and are unaffected.
//
// The order is Mozilla's; Go orders the suites itself (AES-GCM first when
// both sides have AES hardware, else ChaCha20-Poly1305).
var TLS12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CurvePreferences are the key exchange groups, in order of preference:
// Go's default hybrid post-quantum X25519MLKEM768 first (TLS 1.3 only),
// then Mozilla's intermediate curves X25519, P-256 and P-384. P-521 is
// not offered.
var CurvePreferences = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// Harden applies xmppedge's TLS posture to cfg and returns it: MinVersion
// at least MinTLSVersion, CipherSuites exactly TLS12CipherSuites and
// CurvePreferences exactly CurvePreferences (fresh copies, so a caller
// cannot change the package's lists through a config). Every TLS config
// the gateway uses, on either leg and in either role, goes through it
// (ServerConfig, ClientConfig and the InternalCA's configs do so
// themselves); a config built elsewhere must call it. A MaxVersion below
// MinTLSVersion is left alone: such a config fails every handshake. A nil
// cfg gives a new hardened config.
func Harden(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.MinVersion < MinTLSVersion {
		cfg.MinVersion = MinTLSVersion
	}
	cfg.CipherSuites = slices.Clone(TLS12CipherSuites)
	cfg.CurvePreferences = slices.Clone(CurvePreferences)
	return cfg
}
