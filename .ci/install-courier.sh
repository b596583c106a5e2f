# Courier IMAP, the fourth upstream of the end-to-end tests
# (internal/couriertest). Sourced by .ci/run, which calls install_courier.
#
# courier-imap conflicts with dovecot-imapd as a package (both provide
# imap-server), so its binaries are unpacked into /opt/courier-imap rather
# than installed. What it needs besides install normally without touching
# Dovecot: courier-base (couriertcpd, the maildir tools), courier-authlib
# with its authdaemond and the userdb module (userdb, makeuserdb), and the
# libraries imapd links against. Running it again changes nothing.
install_courier() {
  apt-get install -y -q --no-install-recommends \
    courier-base courier-authlib courier-authdaemon courier-authlib-userdb \
    libcourier-unicode4 libgamin0 libgdbm6 libidn12
  if [ ! -x /opt/courier-imap/usr/bin/imapd ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download courier-imap && dpkg-deb -x courier-imap_*.deb /opt/courier-imap)
    rm -rf "$tmp"
  fi
}
