#!/bin/sh
# deb and rpm, before the files are unpacked: the system user and group
# popbridge, which the systemd unit runs as (User=popbridge) and which may
# read /etc/popbridge (the configuration, certificates and keys). Kept on
# removal, as Debian keeps system users, so that files owned by it never
# pass to a later user of the same id.
set -e
if ! getent group popbridge >/dev/null; then
  groupadd --system popbridge
fi
if ! getent passwd popbridge >/dev/null; then
  useradd --system --gid popbridge --home-dir /var/lib/popbridge --no-create-home \
    --shell /usr/sbin/nologin --comment "popbridge POP3-to-IMAP bridge" popbridge
fi
