#!/bin/sh
# deb and rpm, after the files are in place: systemd learns of the unit. A
# first install starts nothing (the example configuration names no real
# IMAP server); an upgrade restarts a running service, which drains its
# sessions first (limits.drain_timeout).
set -e
upgrade=false
case "${1:-}" in
  configure) [ -n "${2:-}" ] && upgrade=true ;; # deb: $2 is the version replaced
  [2-9]*) upgrade=true ;;                       # rpm: versions installed after this
esac
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if $upgrade; then
    systemctl try-restart popbridge.service
  fi
fi
if ! $upgrade; then
  echo "popbridge: edit /etc/popbridge/popbridge.yaml, check it with"
  echo "  popbridge check-config /etc/popbridge/popbridge.yaml"
  echo "then start it with: systemctl enable --now popbridge"
fi
