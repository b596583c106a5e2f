// sasl.go holds the decoding of SASL responses: PLAIN (RFC 4616) and the
// LOGIN mechanism's base64 lines, and the check that keeps control
// characters out of every user name and password.

package pop3front

import (
	"bytes"
	"encoding/base64"
)

// SASL decoding errors, answered as protocol errors.
var (
	errBadBase64 = badCommand("Invalid base64 data")
	errBadPlain  = badCommand("Invalid SASL PLAIN response")
	errBadLogin  = badCommand("Invalid SASL LOGIN response")
)

// errControlChars refuses a user name or password with a control
// character before the Backend sees it: the upstream may cut the name at a
// NUL (Dovecot logs in "user10" for "user10\x00user11") while the limits
// and locks keyed on the whole name, so one user could pass as another.
// RFC 1939's arguments are printable, so no client has a use for them. It
// carries [AUTH] because that is the code a client shows its user as "the
// credentials were not accepted", which is true and asks for the right fix;
// it is a protocol error, so a client that keeps sending them is
// disconnected.
var errControlChars = protoError{&Error{Code: "AUTH", Text: "User names and passwords cannot contain control characters"}}

// decodePlain decodes a base64 SASL PLAIN response (RFC 4616):
// authzid NUL authcid NUL passwd, where authcid is not empty and none of
// the three contains NUL. The response is split at its NULs first, then
// each part is checked for control characters. "=" is the empty response
// (RFC 5034 section 4), which is not a valid PLAIN response.
func decodePlain(b64 []byte) (authz, user, pass string, err error) {
	raw, err := decodeBase64(b64)
	if err != nil {
		return "", "", "", err
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", "", errBadPlain
	}
	for _, p := range parts {
		if hasControl(p) {
			return "", "", "", errControlChars
		}
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

// decodeLogin decodes one line of the LOGIN mechanism: the user name, or
// the password, in base64.
func decodeLogin(b64 []byte) (string, error) {
	raw, err := decodeBase64(b64)
	if err != nil {
		return "", err
	}
	if hasControl(raw) {
		return "", errControlChars
	}
	return string(raw), nil
}

// decodeBase64 decodes a SASL response; "=" is the empty one.
func decodeBase64(b64 []byte) ([]byte, error) {
	if string(b64) == "=" {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil {
		return nil, errBadBase64
	}
	return raw, nil
}

// hasControl reports whether b holds a control character: a byte below
// 0x20, or DEL. Bytes of 0x80 and above stay allowed: UTF-8 passwords are
// common.
func hasControl(b []byte) bool {
	for _, ch := range b {
		if ch < 0x20 || ch == 0x7f {
			return true
		}
	}
	return false
}
