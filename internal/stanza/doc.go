// Package stanza is the stanza error vocabulary of RFC 6120 §8.3: the
// defined conditions, their error types, and the builder of an error
// stanza.
package stanza
