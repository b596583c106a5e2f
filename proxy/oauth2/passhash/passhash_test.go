package passhash

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPasswordVerifiesOnlyThatPassword(t *testing.T) {
	h, err := Argon2id("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: not the documented argon2id format", h)
	}
	h2, _ := Argon2id("correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no random salt")
	}
	ph, err := Parse(h)
	if err != nil {
		t.Fatal(err)
	}
	for pass, want := range map[string]bool{"correct horse": true, "correct hors": false, "Correct horse": false, "": false} {
		if got := ph.Verify(pass); got != want {
			t.Errorf("verify(%q) = %v, want %v", pass, got, want)
		}
	}
}

func TestBcryptHashesAreAccepted(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if !ph.Verify("s3cret") || ph.Verify("s3cre") {
		t.Fatal("bcrypt verification wrong")
	}
}

// Hashes made by the reference implementation's command line tool
// (Debian's argon2 package), so that hashes from other tools verify:
//
//	echo -n password | argon2 somesalt -id -t 2 -m 16 -p 4 -l 24 -e
//	echo -n "correct horse" | argon2 saltsaltsalt -id -t 2 -k 19456 -p 1 -l 32 -e
func TestArgon2idHashesOfTheReferenceToolVerify(t *testing.T) {
	for hash, pass := range map[string]string{
		"$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU":                 "password",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$sDq4SJydHwxWnLTlXqq5ZzNDfmXrJUlaeTohxQaFrio": "correct horse",
	} {
		ph, err := Parse(hash)
		if err != nil {
			t.Fatal(err)
		}
		if !ph.Verify(pass) || ph.Verify(pass+" ") {
			t.Errorf("%s does not verify %q alone", hash, pass)
		}
	}
}

func TestBadPasswordHashesAreRefused(t *testing.T) {
	for _, h := range []string{
		"",
		"secret",
		"{SHA}abc",
		"$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$argon2id$v=19$m=19456,t=2$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU", // 4 GiB
		"$argon2id$v=19$m=19456,t=0,p=1$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU", // 4-octet salt
		"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$short",
		"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ=$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$argon2id$v=19$m=19456,t=2,p=1,x=1$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU",
		"$2b$04$tooshort",
	} {
		if _, err := Parse(h); err == nil {
			t.Errorf("Parse(%q) accepted", h)
		}
	}
}

func FuzzParsePasswordHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$F1jG2CV3/Nr+yRuIsPKw0J9r4s7cJHBU")
	f.Add("$2b$04$abcdefghijklmnopqrstuu5pKj.Uo8mF5j8OF1EXnN1T5hrBsvCK.")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			return
		}
		if h.bcrypt == nil && (h.memory > maxArgonMemory || h.time > maxArgonTime || h.threads > maxArgonThreads || len(h.key) > 64) {
			t.Fatalf("accepted out-of-bounds parameters: %q", s)
		}
		if h.bcrypt == nil && h.memory <= 1024 {
			h.Verify("x") // must not panic
		}
	})
}

func TestHashPasswordBcryptVerifiesOnlyThatPassword(t *testing.T) {
	h, err := Bcrypt("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != bcrypt.DefaultCost || !strings.HasPrefix(h, "$2a$") {
		t.Fatalf("hash %q: cost %d, %v", h, cost, err)
	}
	ph, err := Parse(h)
	if err != nil {
		t.Fatal(err)
	}
	for pass, want := range map[string]bool{"correct horse": true, "correct hors": false, "": false} {
		if got := ph.Verify(pass); got != want {
			t.Errorf("verify(%q) = %v, want %v", pass, got, want)
		}
	}
	if _, err := Bcrypt(strings.Repeat("x", 73)); err == nil {
		t.Error("a password longer than bcrypt's 72 octets was hashed (bcrypt would ignore the rest)")
	}
}
