#!/usr/bin/env bash
# The test suite, with what it needs. First it installs, as Debian packages,
# each program the end-to-end tests drive that is missing (the IMAP servers
# Dovecot, Cyrus and Courier, Redis, the POP3 clients, promtool,
# systemd-analyze, rpm for the release check, a C compiler for -race), then
# it runs `go test -race` on the whole module.
# .ci/run calls it too, so CI and a developer run the same thing.
#
#   ./test.sh                          install what is missing, run every test
#   ./test.sh -run TestQuit ./proxy/   arguments go to go test (default ./...)
#   POPBRIDGE_NO_INSTALL=1 ./test.sh   install nothing: tests of missing
#                                      programs are skipped (they fail when CI=true)
#   POPBRIDGE_INSTALL_ONLY=1 ./test.sh install what is missing, run no test
#
# Installing needs root on Debian (or Ubuntu); elsewhere, or as another user,
# it says what is missing and stops. The Dovecot and Cyrus harnesses need
# root as well: the servers start as root to switch to their mail users.
set -euo pipefail
cd "$(dirname "$0")"

# One function per component: each checks for its programs and queues the
# Debian packages that bring the missing ones. Add a component as a
# function of its own and call it in the list at the end of this section.
missing=()   # what is not there, for the message
packages=()  # the Debian packages that bring it
after_install=() # commands run after apt-get install, each "FUNCTION ARG..."

need() { # need PROGRAM PACKAGE...: queue PACKAGEs unless PROGRAM is on the PATH
  local program=$1; shift
  if ! command -v "$program" > /dev/null 2>&1 && [ ! -x "$program" ]; then
    missing+=("$program")
    packages+=("$@")
  fi
}

# Dovecot, the main IMAP upstream (and its own POP3 server, the reference
# the conformance tests compare with); curl and Python's poplib as clients.
component_dovecot() {
  need /usr/sbin/dovecot dovecot-imapd dovecot-pop3d
  need curl curl ca-certificates
  need python3 python3
}

# POP3 clients that keep UIDL state, as devices (proxy/devices_clients_test.go),
# and Perl's Net::POP3 with IO::Socket::SSL for STLS (proxy/clients_test.go).
component_pop3_clients() {
  need fetchmail fetchmail
  need mpop mpop
  need getmail getmail6
  need perl perl
  if command -v perl > /dev/null 2>&1 && ! perl -MIO::Socket::SSL -e 1 2> /dev/null; then
    missing+=("perl IO::Socket::SSL")
    packages+=(libio-socket-ssl-perl)
  fi
}

# promtool checks the alert rules and the dashboard's queries; systemd-analyze
# verifies the unit (.ci/deploy.sh, proxy/monitoring_test.go); rpm lists what
# the release's .rpm packages hold (.ci/deploy.sh).
component_monitoring_tools() {
  need promtool prometheus
  need systemd-analyze systemd
  need rpm rpm
}

# Cyrus IMAP, the third upstream (internal/cyrustest). cyrus-imapd conflicts
# with dovecot-imapd as a package (both provide imap-server), so its imapd
# is unpacked into /opt/cyrus-imapd rather than installed.
component_cyrus() {
  need /usr/lib/cyrus/bin/master cyrus-common
  need /usr/sbin/saslpasswd2 sasl2-bin
  # The PLAIN mechanism that the harness's sasldb users log in with.
  if ! compgen -G '/usr/lib/*/sasl2/libplain.so*' > /dev/null; then
    missing+=("SASL PLAIN module")
    packages+=(libsasl2-modules)
  fi
  if [ ! -x /opt/cyrus-imapd/usr/lib/cyrus/bin/imapd ]; then
    missing+=(/opt/cyrus-imapd/usr/lib/cyrus/bin/imapd)
    after_install+=("unpack_deb cyrus-imapd /opt/cyrus-imapd")
  fi
}
# unpack_deb PACKAGE DIR unpacks a package that conflicts with
# dovecot-imapd into DIR instead of installing it.
unpack_deb() {
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download "$1" && dpkg-deb -x "$1"_*.deb "$2")
  rm -rf "$tmp"
}

# Courier IMAP, the fourth upstream (internal/couriertest). courier-imap
# conflicts with dovecot-imapd like Cyrus, so its imapd is unpacked into
# /opt/courier-imap; courier-base (couriertcpd), the authdaemon and its
# userdb module install normally without touching Dovecot.
component_courier() {
  need /usr/sbin/couriertcpd courier-base
  need /usr/sbin/authdaemond courier-authlib courier-authdaemon
  need /usr/sbin/makeuserdb courier-authlib-userdb
  if [ ! -x /opt/courier-imap/usr/bin/imapd ]; then
    missing+=(/opt/courier-imap/usr/bin/imapd)
    # The libraries imapd links against, which only courier-imap pulls in.
    packages+=(libcourier-unicode4 libgamin0 libgdbm6 libidn12)
    after_install+=("unpack_deb courier-imap /opt/courier-imap")
  fi
}

# Redis, the shared state of several replicas (internal/redistest starts
# private instances on 127.0.0.1; the package's own service is not started).
component_redis() {
  need redis-server redis-server
}

# go test -race needs cgo, and cgo a C compiler.
component_c_compiler() {
  need gcc gcc libc6-dev
}

component_dovecot
component_pop3_clients
component_monitoring_tools
component_cyrus
component_courier
component_redis
component_c_compiler

if [ ${#missing[@]} -gt 0 ] && [ -z "${POPBRIDGE_NO_INSTALL:-}" ]; then
  echo "test.sh: missing ${missing[*]}"
  if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ] || ! command -v apt-get > /dev/null; then
    echo "test.sh: cannot install them here: that takes root on Debian or Ubuntu." >&2
    echo "  Install them yourself (Debian packages: ${packages[*]:-none}; see the component" >&2
    echo "  functions in test.sh), or run POPBRIDGE_NO_INSTALL=1 ./test.sh to skip their tests." >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  if [ ${#packages[@]} -gt 0 ]; then
    # The packages' own service start is not needed: tests start private
    # servers on loopback.
    apt-get install -y -q --no-install-recommends "${packages[@]}"
  fi
  for step in "${after_install[@]}"; do $step; done # a function and its words
fi
if [ -n "${POPBRIDGE_INSTALL_ONLY:-}" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: not root: the Dovecot and Cyrus tests will be skipped (they fail when CI=true)"
fi

# Go 1.26.10 carries the security fixes (crypto/tls, crypto/x509, net/http)
# that govulncheck reports against Go 1.26.8; the go command fetches it from
# the module proxy. README.md says the same for builds.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.26.10}
if [ $# -eq 0 ]; then
  set -- ./...
fi
exec go test -race -count=1 -timeout 30m "$@"
