package benchrig

// The popbridge processes the rig measures: the binary under test, the
// -baseline binary and the snapshot cache's instances, each started with
// the limits the load needs lifted.

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/proctest"
)

// popbridgeProc is the popbridge binary under test.
type popbridgeProc struct {
	*proctest.Process
	addr string
}

func startPopbridge(ctx context.Context, bin, upstream, logPath string, extra ...string) (*popbridgeProc, error) {
	return startPopbridgeConf(ctx, bin, upstream, logPath, "", extra...)
}

// startPopbridgeConf is startPopbridge with conf added to its
// configuration file.
func startPopbridgeConf(ctx context.Context, bin, upstream, logPath, conf string, extra ...string) (*popbridgeProc, error) {
	ports, err := proctest.FreePorts(1)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	// Every benchmark client comes from 127.0.0.1 and logs in as one of
	// two users, up to 32 at once: the per-address and per-user limits,
	// which keep one address or one guesser from starving the others,
	// would refuse the load itself. Values an older binary accepts too,
	// for -baseline.
	limits := strings.TrimSuffix(logPath, ".log") + "-config.yaml"
	conf += "limits:\n  max_connections: 1000000\n  max_connections_per_ip: 1000000\n" +
		"  auth_failures_per_ip: 0\n  auth_failures_per_user: 0\n"
	if err := os.WriteFile(limits, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	args := append([]string{"-config", limits, "-listen", addr, "-upstream", upstream, "-upstream-tls", "none", "-log-level", "warn"}, extra...)
	proc, err := proctest.Start(logPath, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := proc.WaitGreeting(addr, "+OK", "", 15*time.Second); err != nil {
		proc.Kill()
		return nil, fmt.Errorf("popbridge: %w", err)
	}
	return &popbridgeProc{Process: proc, addr: addr}, nil
}
