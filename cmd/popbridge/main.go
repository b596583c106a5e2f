// Command popbridge is a POP3 server whose maildrop is a mailbox on an
// upstream IMAP server.
//
//	popbridge                                   demo: in-memory upstream, user demo/demo
//	popbridge -listen 0.0.0.0:110 -upstream imap.example.com:993
//	popbridge -config popbridge.yaml            everything from one YAML file
//	popbridge check-config popbridge.yaml       validate a config file
//	popbridge oauth login -config FILE ACCOUNT  authorise an OAuth2 account (oauth.go)
//	popbridge oauth keygen FILE                 a new token-store key
//	popbridge hash-password [-bcrypt]           hash a local password from stdin
//	popbridge who | kick | config               the admin view of a running popbridge (admin.go)
//	popbridge version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/popbridge/popbridge/proxy/config"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // a runtime failure
	exitConfig = 2 // bad flags or config
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// subcommands run with the arguments after their name and return the exit
// code; without one of them (or those run handles itself), popbridge
// serves.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"oauth":         oauthCmd,
	"who":           whoCmd,
	"kick":          kickCmd,
	"config":        configCmd,
	"uidl":          uidlCmd,
	"hash-password": hashPassword,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if cmd, ok := subcommands[args[0]]; ok {
			return cmd(ctx, args[1:], stdout, stderr)
		}
		switch args[0] {
		case "version":
			printVersion(stdout)
			return exitOK
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "help":
			fmt.Fprintln(stdout, usageText)
			return exitOK
		}
	}

	fs := flag.NewFlagSet("popbridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "read the configuration from this YAML `file`")
	listen := fs.String("listen", "", "POP3 listen `address` (default "+config.DefaultListen+")")
	upstream := fs.String("upstream", "", "upstream IMAP server `host:port`; without it and without -config, a demo runs")
	upstreamTLS := fs.String("upstream-tls", "", "upstream TLS `mode`: implicit, starttls or none (default implicit for port 993, else starttls)")
	mailbox := fs.String("mailbox", "", "upstream `mailbox` served as the maildrop (default INBOX)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "", "log `format`: text or json")
	metricsListen := fs.String("metrics-listen", "", "serve /metrics, /healthz and /readyz over HTTP on this `address` (default: metrics.listen, else off)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usageText+"\n\nflags:")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}

	// Flags override the file, at start and at every reload.
	overrides := func(cfg *config.Config) {
		if *listen != "" {
			cfg.Listen = []config.ListenConfig{{Address: *listen}}
		}
		setIf(&cfg.Upstream.Address, *upstream)
		setIf(&cfg.Upstream.TLS, *upstreamTLS)
		setIf(&cfg.Upstream.Mailbox, *mailbox)
		setIf(&cfg.Log.Level, *logLevel)
		setIf(&cfg.Log.Format, *logFormat)
		setIf(&cfg.Metrics.Listen, *metricsListen)
	}
	cfg := &config.Config{}
	if *configPath != "" {
		var err error
		if cfg, err = config.LoadConfig(*configPath); err != nil {
			fmt.Fprintf(stderr, "popbridge: %s: invalid configuration:\n%v\n", *configPath, err)
			return exitConfig
		}
	}
	overrides(cfg)

	var demo *demoUpstream
	if cfg.Upstream.Address == "" && *configPath == "" {
		var err error
		if demo, err = startDemo(); err != nil {
			fmt.Fprintln(stderr, "popbridge: demo:", err)
			return exitFail
		}
		defer demo.Close()
		cfg.Upstream.Address = demo.Addr
		cfg.Upstream.TLS = "none"
	}
	if err := cfg.Check(); err != nil {
		fmt.Fprintf(stderr, "popbridge: invalid configuration:\n%v\n", err)
		return exitConfig
	}
	var load func() (*config.Config, error)
	if *configPath != "" {
		load = func() (*config.Config, error) {
			cfg, err := config.LoadConfig(*configPath)
			if err != nil {
				return nil, err
			}
			overrides(cfg)
			return cfg, cfg.Check()
		}
	}
	return serve(ctx, cfg, load, demo, stdout, stderr)
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: popbridge check-config FILE")
		return exitConfig
	}
	cfg, err := config.LoadConfig(args[0])
	if err == nil {
		err = cfg.Check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", args[0], err)
		return exitConfig
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", args[0], w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[0])
	return exitOK
}

func setIf[T ~string](dst *T, v string) {
	if v != "" {
		*dst = T(v)
	}
}
