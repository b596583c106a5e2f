// Package pop3front is a POP3 server (RFC 1939, RFC 2449 CAPA and response
// codes, RFC 5034 SASL PLAIN and LOGIN) that serves maildrops from a
// Backend, knowing the wire protocol and nothing of where the mail lives.
package pop3front
