package main

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/memimap"
)

// demoUpstream is the in-memory IMAP server behind `popbridge` run with no
// configuration: user demo, password demo, a few realistic messages.
type demoUpstream struct {
	*memimap.Server
}

func startDemo() (*demoUpstream, error) {
	srv, err := memimap.Listen(memimap.Options{})
	if err != nil {
		return nil, err
	}
	srv.AddUser("demo", "demo")
	for i, m := range demoMessages {
		var flags []imap.Flag
		if i == 0 {
			flags = []imap.Flag{imap.FlagSeen}
		}
		if err := srv.Append("demo", "INBOX", crlf(m), flags...); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return &demoUpstream{srv}, nil
}

// crlf writes the messages below, kept readable with LF, as mail is
// stored: with CRLF line ends.
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.TrimPrefix(s, "\n"), "\n", "\r\n"))
}

var demoMessages = []string{`
Return-Path: <welcome@popbridge.example>
Date: Mon, 02 Nov 2026 09:00:00 +0000
From: popbridge <welcome@popbridge.example>
To: Demo User <demo@popbridge.example>
Subject: Welcome to popbridge
Message-ID: <welcome.1@popbridge.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello,

this mailbox lives on an IMAP server. You are reading it over POP3
through popbridge: DELE and QUIT remove mail upstream, and every other
device that reads this mailbox over IMAP sees the same state.

-- 
popbridge
`, `
Date: Tue, 03 Nov 2026 14:12:45 +0100
From: Alice Example <alice@example.org>
To: Demo User <demo@popbridge.example>
Subject: Quarterly report
Message-ID: <report.q3@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="----=_Part_0_1234"

------=_Part_0_1234
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hi,

the figures for the last quarter are attached.

Alice

------=_Part_0_1234
Content-Type: text/csv; name="q3.csv"
Content-Disposition: attachment; filename="q3.csv"
Content-Transfer-Encoding: base64

bW9udGgsb3JkZXJzLHJldmVudWUKSnVseSwxMjQsMTg2MDAKQXVndXN0LDk4LDE0NzAwClNl
cHRlbWJlciwxNDEsMjExNTAK
------=_Part_0_1234--
`, `
Date: Wed, 04 Nov 2026 08:30:00 -0500
From: Bob Builder <bob@example.net>
To: Demo User <demo@popbridge.example>
Subject: Lines that start with a dot
Message-ID: <dots.7@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

POP3 ends a message with a line holding a single dot, so a server must
double a dot at the start of a line and the client must undo it.
These lines test that:
.
.hidden
..two dots
...
End of message.
`, `
Date: Thu, 05 Nov 2026 17:45:10 +0100
From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>
To: Demo User <demo@popbridge.example>
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=
Message-ID: <gruss.42@example.de>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-boundary"

--alt-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Viele Gr=C3=BC=C3=9Fe aus M=C3=BCnchen!

--alt-boundary
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Viele Gr=C3=BC=C3=9Fe aus <b>M=C3=BCnchen</b>!</p>

--alt-boundary--
`}
