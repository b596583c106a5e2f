package pop3front

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestDecodePlain(t *testing.T) {
	for _, tc := range []struct {
		in                string
		authz, user, pass string
		err               error
	}{
		{plain("", "alice", "secret"), "", "alice", "secret", nil},
		{plain("alice", "alice", " p w "), "alice", "alice", " p w ", nil},
		{plain("", "alice", ""), "", "alice", "", nil},
		{"=", "", "", "", errBadPlain},
		{"", "", "", "", errBadPlain},
		{"!!", "", "", "", errBadBase64},
		{"YWxpY2U", "", "", "", errBadBase64}, // unpadded
		{plain("", "", "secret"), "", "", "", errBadPlain},
		{base64.StdEncoding.EncodeToString([]byte("alice\x00secret")), "", "", "", errBadPlain},
		// RFC 4616: no NUL inside the password.
		{plain("", "alice", "se\x00cret"), "", "", "", errBadPlain},
		// Control characters, in any of the three parts.
		{plain("", "user10\r\nuser11", "secret"), "", "", "", errControlChars},
		{plain("x\x7f", "alice", "secret"), "", "", "", errControlChars},
		{plain("", "alice", "sec\tret"), "", "", "", errControlChars},
		{plain("", "alicé", "pässword"), "", "alicé", "pässword", nil},
	} {
		authz, user, pass, err := decodePlain([]byte(tc.in))
		if err != tc.err || authz != tc.authz || user != tc.user || pass != tc.pass {
			t.Errorf("decodePlain(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				tc.in, authz, user, pass, err, tc.authz, tc.user, tc.pass, tc.err)
		}
	}
}

// FuzzDecodePlain: any input is decoded or refused without a panic, and a
// response is accepted exactly when it has three NUL-separated fields
// with a non-empty user and no control characters, which come back
// unchanged.
func FuzzDecodePlain(f *testing.F) {
	f.Add([]byte("\x00alice\x00secret"))
	f.Add([]byte("alice\x00alice\x00p w"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("a\x00b\x00c\x00d"))
	f.Add([]byte("=="))
	f.Fuzz(func(t *testing.T, raw []byte) {
		decodePlain(raw) // as a base64 line: must not panic
		authz, user, pass, err := decodePlain([]byte(base64.StdEncoding.EncodeToString(raw)))
		parts := bytes.Split(raw, []byte{0})
		valid := len(parts) == 3 && len(parts[1]) > 0 && !hasControl(bytes.Join(parts, nil))
		if (err == nil) != valid {
			t.Fatalf("decodePlain(base64(%q)): err %v, want valid %v", raw, err, valid)
		}
		if valid && (authz != string(parts[0]) || user != string(parts[1]) || pass != string(parts[2])) {
			t.Fatalf("decodePlain(base64(%q)) = %q, %q, %q", raw, authz, user, pass)
		}
	})
}

func TestDecodeLogin(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"YWxpY2U=", "alice", nil},
		{"=", "", nil},
		{"", "", nil},
		{"YWxpY2U", "", errBadBase64},
		{base64.StdEncoding.EncodeToString([]byte("user10\x00user11")), "", errControlChars},
		{base64.StdEncoding.EncodeToString([]byte("p\x7f")), "", errControlChars},
	} {
		got, err := decodeLogin([]byte(tc.in))
		if got != tc.want || err != tc.err {
			t.Errorf("decodeLogin(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
