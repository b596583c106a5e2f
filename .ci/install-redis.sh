# Sourced by .ci/run: install_redis installs Debian's redis-server for the
# tests of the shared state (internal/redistest starts private instances on
# 127.0.0.1). The package's own service is not needed and is not started.
install_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
}
