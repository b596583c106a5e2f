// admin.go holds the operator's commands that call a running popbridge's
// admin listener, as doveadm who, doveadm kick and doveconf -n do for
// Dovecot: who, kick, config and oauth status.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/popbridge/popbridge/proxy/admin"
)

// defaultConfigPath is read for the admin address and token when neither
// -admin nor -config is given (a variable for tests).
var defaultConfigPath = "/etc/popbridge/popbridge.yaml"

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	url, tokenFile, config *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		url:       fs.String("admin", "", "the admin listener's `URL` (default: admin.listen of the config file)"),
		tokenFile: fs.String("token-file", "", "read the bearer token from this `file` (default: admin.token_file of the config file)"),
		config:    fs.String("config", "", "take the defaults of -admin and -token-file from this configuration `file` (default "+defaultConfigPath+" if it exists)"),
	}
}

// client builds the admin client from the flags and the configuration
// file's admin section.
func (f adminFlags) client() (*admin.Client, error) {
	url, tokenFile := *f.url, *f.tokenFile
	path := *f.config
	if path == "" && (url == "" || tokenFile == "") {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	if path != "" {
		cfg, err := admin.ConfigFromFile(path)
		if err != nil {
			return nil, err
		}
		if url == "" {
			if cfg.Listen == "" {
				return nil, fmt.Errorf("%s: admin.listen is not set: the admin listener is off (docs/operations.md, Admin view)", path)
			}
			url = dialAddress(cfg.Listen)
		}
		if tokenFile == "" {
			tokenFile = cfg.TokenFile
		}
	}
	if url == "" {
		return nil, errors.New("no admin listener: give -admin URL, or -config FILE with admin.listen")
	}
	c := &admin.Client{URL: url}
	if tokenFile != "" {
		tok, err := admin.ReadToken(tokenFile)
		if err != nil {
			return nil, err
		}
		c.Token = tok
	}
	return c, nil
}

// dialAddress turns a listen address into one to connect to: a listener
// on every interface is reached on loopback.
func dialAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// adminCommand parses args for the command name (flags before and after
// the positional arguments), builds the client and runs call with it. The
// exit code is exitConfig on a usage error, exitFail if call fails.
func adminCommand(ctx context.Context, name, usage string, args []string, stderr io.Writer,
	setup func(fs *flag.FlagSet), call func(ctx context.Context, c *admin.Client, pos []string) error) int {
	fs := flag.NewFlagSet("popbridge "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	af := addAdminFlags(fs)
	if setup != nil {
		setup(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: popbridge "+usage+"\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	c, err := af.client()
	if err == nil {
		err = call(ctx, c, pos)
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "popbridge %s: %v\n", name, err)
		fs.Usage()
		return exitConfig
	case err != nil:
		fmt.Fprintf(stderr, "popbridge %s: %v\n", name, err)
		return exitFail
	}
	return exitOK
}

// usageError is a command line that the command cannot run.
type usageError string

func (e usageError) Error() string { return string(e) }

func whoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var long *bool
	return adminCommand(ctx, "who", "who [-l] [-admin URL] [-token-file FILE] [-config FILE] [USER]", args, stderr,
		func(fs *flag.FlagSet) {
			long = fs.Bool("l", false, "one line per session, also those not logged in yet")
		},
		func(ctx context.Context, c *admin.Client, pos []string) error {
			if len(pos) > 1 {
				return usageError("one USER at most")
			}
			user := ""
			if len(pos) == 1 {
				user = pos[0]
			}
			list, err := c.Sessions(ctx, user)
			if err != nil {
				return err
			}
			if *long {
				printSessions(stdout, list)
			} else {
				printWho(stdout, list)
			}
			return nil
		})
}

// printWho prints one line per user and device, as doveadm who does:
// how many sessions, and from which addresses. Sessions not logged in yet
// are left out.
func printWho(w io.Writer, list []admin.Session) {
	type key struct{ user, device string }
	type group struct {
		n     int
		addrs []string
	}
	groups := map[key]*group{}
	var order []key
	for _, s := range list {
		if s.User == "" {
			continue
		}
		k := key{s.User, s.Device}
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.n++
		if ip := hostOf(s.Remote); !slices.Contains(g.addrs, ip) {
			g.addrs = append(g.addrs, ip)
		}
	}
	slices.SortFunc(order, func(a, b key) int {
		return strings.Compare(a.user+"\x00"+a.device, b.user+"\x00"+b.device)
	})
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tDEVICE\tSESSIONS\tREMOTE")
	for _, k := range order {
		g := groups[k]
		fmt.Fprintf(tw, "%s\t%s\t%d\t(%s)\n", k.user, orDash(k.device), g.n, strings.Join(g.addrs, " "))
	}
	tw.Flush()
}

// printSessions prints one line per session, oldest first.
func printSessions(w io.Writer, list []admin.Session) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tDEVICE\tREMOTE\tLISTENER\tTLS\tUPSTREAM\tSTATE\tSINCE\tSENT\tRETR\tMARKED")
	for _, s := range list {
		tls := "no"
		if s.TLS {
			tls = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.ID, orDash(s.User), orDash(s.Device), s.Remote,
			s.Listener, tls, orDash(s.Upstream), s.State, s.Since.UTC().Format(time.RFC3339), s.Sent, s.Retrieved, s.Marked)
	}
	tw.Flush()
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kickCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var id *string
	return adminCommand(ctx, "kick", "kick [-admin URL] [-token-file FILE] [-config FILE] USER | -id ID\n\n"+
		"Closes the sessions without their UPDATE state: nothing marked deleted is removed.", args, stderr,
		func(fs *flag.FlagSet) {
			id = fs.String("id", "", "kick the session with this `id` (popbridge who -l) instead of a user's")
		},
		func(ctx context.Context, c *admin.Client, pos []string) error {
			user := ""
			switch {
			case *id == "" && len(pos) == 1:
				user = pos[0]
			case *id == "" || len(pos) != 0:
				return usageError("give USER or -id ID")
			}
			n, err := c.Kick(ctx, *id, user)
			if err != nil {
				return err
			}
			what := "of user " + user
			if *id != "" {
				what = "with id " + *id
			}
			if n == 0 {
				return fmt.Errorf("no open session %s (one in its UPDATE state is left to finish)", what)
			}
			fmt.Fprintf(stdout, "kicked %d session(s) %s: closed without UPDATE, nothing deleted\n", n, what)
			return nil
		})
}

// adminQuery is adminCommand for a command with no flags and no
// arguments of its own.
func adminQuery(ctx context.Context, name, usage string, args []string, stderr io.Writer,
	call func(ctx context.Context, c *admin.Client) error) int {
	return adminCommand(ctx, name, usage, args, stderr, nil,
		func(ctx context.Context, c *admin.Client, pos []string) error {
			if len(pos) != 0 {
				return usageError("no arguments")
			}
			return call(ctx, c)
		})
}

func configCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return adminQuery(ctx, "config", "config [-admin URL] [-token-file FILE] [-config FILE]\n\n"+
		"Prints the configuration in force in the running popbridge, secrets redacted.", args, stderr,
		func(ctx context.Context, c *admin.Client) error {
			doc, err := c.Config(ctx)
			if err == nil {
				_, err = stdout.Write(doc)
			}
			return err
		})
}

func oauthStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return adminQuery(ctx, "oauth status", "oauth status [-admin URL] [-token-file FILE] [-config FILE]\n\n"+
		"Lists the OAuth2 accounts of the running popbridge and the state of their tokens.", args, stderr,
		func(ctx context.Context, c *admin.Client) error {
			list, err := c.OAuth(ctx)
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintln(stdout, "no OAuth2 accounts")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCOUNT\tPROVIDER\tSTATE\tDETAIL")
			for _, a := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(a.Account), a.Provider, a.State, tokenDetail(a))
			}
			return tw.Flush()
		})
}

// tokenDetail says what an account's state means for the operator.
func tokenDetail(a admin.AccountState) string {
	const layout = time.RFC3339
	switch a.State {
	case admin.TokenValid:
		return "access token valid until " + a.ValidUntil.UTC().Format(layout)
	case admin.TokenIdle:
		return "no access token yet: the next login gets one"
	case admin.TokenNeedsLogin:
		why := "run: popbridge oauth login -config FILE " + a.Account
		if a.LastError != "" {
			why = a.LastError + "; " + why
		}
		return why
	case admin.TokenFailing:
		return fmt.Sprintf("refresh failing since %s (last error: %s)", a.FailingSince.UTC().Format(layout), orDash(a.LastError))
	}
	return ""
}
