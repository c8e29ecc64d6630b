#!/usr/bin/env bash
# Makes sure the Debian packages the test suite needs are present: installs
# them when running as root with apt (as CI does), otherwise stops with a
# message naming them. A test is never skipped for a missing package.
#   spin            model checking of docs/model (tests/verify*)
#   gcc, make       the XS test host and the native module (hosts/xs-test)
#   libmbedtls-dev  the native module's Linux backend
#   strace          tests/hub-file-mode: the mode a database file is created with
#   openssl         tests/hub-cert: an independent reading of the certificate
#   postgresql      the hub's PostgreSQL backend (a throwaway cluster per test run)
#   chromium        the dashboard's browser tests (headless, via playwright-core)
set -euo pipefail
need=()
command -v spin >/dev/null 2>&1 || need+=(spin)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f /usr/include/mbedtls/aes.h ] || need+=(libmbedtls-dev)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi
echo "system-deps: the test suite needs these Debian packages: ${need[*]}" >&2
echo "system-deps: install them with: sudo apt-get install -y ${need[*]}" >&2
exit 1
