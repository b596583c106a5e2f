// sasl.go holds the decoding of a SASL PLAIN response (RFC 4616).

package pop3front

import (
	"bytes"
	"encoding/base64"
)

// SASL PLAIN decoding errors, answered as protocol errors.
var (
	errBadBase64 = badCommand("Invalid base64 data")
	errBadPlain  = badCommand("Invalid SASL PLAIN response")
)

// decodePlain decodes a base64 SASL PLAIN response (RFC 4616):
// authzid NUL authcid NUL passwd, where authcid is not empty and none of
// the three contains NUL. "=" is the empty response (RFC 5034 section 4),
// which is not a valid PLAIN response.
func decodePlain(b64 []byte) (authz, user, pass string, err error) {
	if string(b64) == "=" {
		b64 = nil
	}
	raw, derr := base64.StdEncoding.DecodeString(string(b64))
	if derr != nil {
		return "", "", "", errBadBase64
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", "", errBadPlain
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}
