package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/popbridge/popbridge/proxy/config"
	"github.com/popbridge/popbridge/proxy/oauth2"
	"github.com/popbridge/popbridge/proxy/oauth2/passhash"
	"github.com/popbridge/popbridge/proxy/oauth2/storekey"
)

// The operator's commands for OAuth2 accounts: oauth login, oauth keygen
// and hash-password. docs/oauth2.md walks through them.

// stdin is where hash-password reads the password (a variable for tests).
var stdin io.Reader = os.Stdin

const usageText = `usage: popbridge [flags]                      serve (without -config and -upstream: a demo)
       popbridge check-config FILE             validate a config file
       popbridge oauth login -config FILE [-grant device|code] [-timeout 10m]
                             [-redirect-host 127.0.0.1|localhost] [-redirect-port N] ACCOUNT
                                               authorise an oauth2 account once, store its token
       popbridge oauth keygen FILE             write a new token-store key (mode 0600)
       popbridge oauth status [ADMIN FLAGS]    list oauth2 accounts and their token states
       popbridge hash-password [-bcrypt]       hash a local password read from stdin
       popbridge uidl import -user USER ...    map an old POP3 server's UIDLs to the IMAP mailbox
                                               (popbridge uidl import -help; docs/uidl.md)
       popbridge who [-l] [ADMIN FLAGS] [USER] list open sessions, as doveadm who
       popbridge kick [ADMIN FLAGS] USER | -id ID
                                               close sessions without UPDATE: nothing deleted
       popbridge config [ADMIN FLAGS]          print the running configuration, secrets redacted
       popbridge version
       popbridge help

ADMIN FLAGS: -admin URL -token-file FILE -config FILE (default /etc/popbridge/popbridge.yaml:
its admin.listen and admin.token_file). See docs/oauth2.md for Microsoft 365 and Gmail
mailboxes, docs/operations.md for the admin view.`

func oauthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: popbridge oauth login [flags] ACCOUNT | popbridge oauth keygen FILE | popbridge oauth status [flags]")
		return exitConfig
	}
	switch args[0] {
	case "login":
		return oauthLogin(ctx, args[1:], stdout, stderr)
	case "keygen":
		return oauthKeygen(args[1:], stdout, stderr)
	case "status":
		return oauthStatus(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "popbridge oauth: unknown command %q: want login, keygen or status\n", args[0])
	return exitConfig
}

// parseFlags parses args into fs, which takes no positional arguments.
// Unless ok, the command ends with code: exitOK after -help, exitConfig
// on a usage error, which fs has reported on its output.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		return usageCode(err), false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitConfig, false
	}
	return 0, true
}

// usageCode is the exit code of a command whose flags did not parse:
// exitOK after -help, else exitConfig (the flag set has reported why).
func usageCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitConfig
}

// parseInterspersed parses flags before and after the positional
// arguments (`oauth login ACCOUNT -config FILE` reads as naturally as the
// other order), which flag.Parse alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func oauthLogin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("popbridge oauth login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the popbridge configuration `file` (required)")
	grant := fs.String("grant", "", "`grant` to run: device or code (default: the provider's)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the sign-in has not happened within this `duration`")
	redirectHost := fs.String("redirect-host", "127.0.0.1", "code grant: `host` of the loopback redirect URI, 127.0.0.1 or localhost, as the app registration names it")
	redirectPort := fs.Int("redirect-port", 0, "code grant: `port` of the loopback redirect (default: any free port)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: popbridge oauth login -config FILE [flags] ACCOUNT\n\n"+
			"Runs the OAuth2 grant of ACCOUNT's provider once and saves the token in the token store.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitConfig
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "popbridge oauth login: -config FILE is required: the account, its provider and the token store are configured there")
		return exitConfig
	}
	cfg, err := config.LoadConfig(*configPath)
	if err == nil {
		err = cfg.Check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", *configPath, err)
		return exitConfig
	}
	err = oauth2.Login(ctx, cfg, pos[0], oauth2.LoginOptions{
		Grant:        config.Grant(*grant),
		Timeout:      *timeout,
		RedirectHost: *redirectHost,
		RedirectPort: *redirectPort,
		Out:          stdout,
	})
	if err != nil {
		fmt.Fprintln(stderr, "popbridge oauth login:", err)
		return exitFail
	}
	return exitOK
}

func oauthKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: popbridge oauth keygen FILE")
		return exitConfig
	}
	if err := storekey.Generate(args[0]); err != nil {
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(stderr, "popbridge oauth keygen: %s exists: not overwritten, since the tokens sealed with that key would become unreadable\n", args[0])
		} else {
			fmt.Fprintln(stderr, "popbridge oauth keygen:", err)
		}
		return exitFail
	}
	fmt.Fprintf(stdout, "Wrote a new token-store key to %s (mode 0600). Set oauth2.token_store.key_file to it, and keep a copy: without it the stored tokens cannot be read.\n", args[0])
	return exitOK
}

// maxPasswordLine bounds what hash-password reads.
const maxPasswordLine = 4096

func hashPassword(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("popbridge hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	useBcrypt := fs.Bool("bcrypt", false, "bcrypt (cost 10) instead of argon2id")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: popbridge hash-password [-bcrypt] < password\n\n"+
			"Reads one line, the local POP3 password of an oauth2 account, and prints its hash for password_hash.\n\nflags:")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	done := func() {}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			// A terminal: say what is expected, and keep the password
			// off the screen if stty can (no terminal library is among
			// the dependencies).
			if restore := echoOff(f); restore != nil {
				done = func() {
					restore()
					fmt.Fprintln(stderr) // for the Enter that was not echoed
				}
				defer func() { done() }() // also when interrupted
				fmt.Fprint(stderr, "Password (not shown): ")
			} else {
				fmt.Fprint(stderr, "Password (one line; it shows as you type): ")
			}
		}
	}
	type read struct {
		line string
		err  error
	}
	lines := make(chan read, 1)
	go func() {
		// Left blocked if interrupted: the process ends right after.
		line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPasswordLine+2), maxPasswordLine+2).ReadString('\n')
		lines <- read{line, err}
	}()
	var line string
	select {
	case r := <-lines:
		done()
		done = func() {}
		line = r.line
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			fmt.Fprintln(stderr, "popbridge hash-password: reading the password:", r.err)
			return exitFail
		}
	case <-ctx.Done():
		fmt.Fprintln(stderr, "popbridge hash-password: interrupted")
		return exitFail
	}
	password := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(password) > maxPasswordLine {
		fmt.Fprintf(stderr, "popbridge hash-password: the password is longer than %d octets\n", maxPasswordLine)
		return exitFail
	}
	if password == "" {
		fmt.Fprintln(stderr, "popbridge hash-password: the password is empty (it is read from stdin, one line)")
		return exitFail
	}
	hash := passhash.Argon2id
	if *useBcrypt {
		hash = passhash.Bcrypt
	}
	h, err := hash(password)
	if err != nil {
		// Errors of the hash functions never quote the password.
		fmt.Fprintln(stderr, "popbridge hash-password:", err)
		return exitFail
	}
	fmt.Fprintln(stdout, h)
	return exitOK
}

// echoOff switches the terminal's echo off with stty and returns what
// switches it on again, or nil if that did not work.
func echoOff(tty *os.File) func() {
	stty := func(arg string) error {
		cmd := exec.Command("stty", arg)
		cmd.Stdin = tty
		return cmd.Run()
	}
	if stty("-echo") != nil {
		return nil
	}
	return func() { stty("echo") }
}
