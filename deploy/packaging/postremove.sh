#!/bin/sh
# deb and rpm, after the files are gone: systemd forgets the unit. The
# configuration (deb: until purge), /var/lib/popbridge and the popbridge
# user stay.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
