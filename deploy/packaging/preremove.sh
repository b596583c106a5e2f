#!/bin/sh
# deb and rpm, before the files go: a removal (not an upgrade) stops and
# disables the service; stopping drains open sessions first.
set -e
case "${1:-}" in
  remove | 0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now popbridge.service || true
    fi
    ;;
esac
