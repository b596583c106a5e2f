package proxy

import (
	"testing"
	"time"
)

// A login splits into user, folder and device: the device at the last
// device separator, then the folder at the first folder separator.
func TestSplitLoginIntoUserFolderAndDevice(t *testing.T) {
	cfg := testConfig("127.0.0.1:143")
	cfg.Policy.Folders.Separator = "+"
	cfg.Policy.Devices.Separator = "#"
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	ps := newPolicies(cfg)
	for _, tc := range []struct {
		login string
		want  loginName
		bad   bool
	}{
		{login: "alice", want: loginName{user: "alice"}},
		{login: "alice+Scans", want: loginName{user: "alice", folder: "Scans"}},
		{login: "alice+C++", want: loginName{user: "alice", folder: "C++"}},
		{login: "alice@example.com+Support/Inbound#Phone", want: loginName{user: "alice@example.com", folder: "Support/Inbound", device: "phone"}},
		{login: "alice#phone", want: loginName{user: "alice", device: "phone"}},
		{login: "+Scans", bad: true},
		{login: "alice+", bad: true},
		{login: "alice+Sc*ns", bad: true},
		{login: "alice+Scans#", bad: true},
	} {
		got, err := ps.split(tc.login)
		switch {
		case tc.bad && err == nil:
			t.Errorf("%q: split into %+v, want a refusal", tc.login, got)
		case !tc.bad && (err != nil || got != tc.want):
			t.Errorf("%q: %+v, %v; want %+v", tc.login, got, err, tc.want)
		}
	}

	// Without a folder separator a "+" is part of the user name.
	cfg = testConfig("127.0.0.1:143")
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	if got, err := newPolicies(cfg).split("alice+Scans"); err != nil || got != (loginName{user: "alice+Scans"}) {
		t.Errorf("folders off: %+v, %v", got, err)
	}
}

// A merged maildrop's login takes two upstream logins one after the
// other, and the login's overall deadline allows for both.
func TestMergedFoldersDoubleTheLoginDeadline(t *testing.T) {
	deadline := func(mailboxes ...string) time.Duration {
		cfg := testConfig("127.0.0.1:143")
		cfg.Upstream.Mailboxes = mailboxes
		if err := cfg.Check(); err != nil {
			t.Fatal(err)
		}
		p, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		return p.srv.CommandTimeout - 3*cfg.State.CommandTimeout
	}
	one := 5*time.Second + 3*10*time.Second // testConfig's dial and command timeouts
	if got := deadline(); got != one {
		t.Errorf("one folder: upstream part of the login deadline %v, want %v", got, one)
	}
	if got := deadline("INBOX", "Junk"); got != 2*one {
		t.Errorf("merged folders: upstream part of the login deadline %v, want %v", got, 2*one)
	}
}
