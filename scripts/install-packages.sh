#!/usr/bin/env bash
# install-packages.sh — install the Debian packages pg_infer needs to build,
# run and test, when they are missing.  Needs root (or sudo).  Used by
# `make demo` (scripts/demo.sh) and by CI (.ci/run).
#
# PostgreSQL 15 comes from Debian 12's own archive.  CUDA is not installed
# here: when /usr/local/cuda (or nvcc on PATH) exists, the build uses it.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PACKAGES=(
    build-essential                          # gcc, make
    "postgresql-$PG_MAJOR"                   # the server
    "postgresql-server-dev-$PG_MAJOR"        # PGXS, server headers, pg_regress, clang for bitcode
    "postgresql-$PG_MAJOR-pgtap"             # pgTAP extension
    libtap-parser-sourcehandler-pgtap-perl   # pg_prove
    prometheus-postgres-exporter             # test/exporter_test.sh (contrib/prometheus)
    curl                                     # test/exporter_test.sh fetches /metrics
    "postgresql-$PG_MAJOR-plproxy"           # test/scale_out_test.sh (contrib/scale-out/router.sql)
)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "# Debian packages: all present (${PACKAGES[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-packages.sh: missing packages (${missing[*]}) and neither root nor sudo" >&2
    exit 1
fi

echo "# Debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
