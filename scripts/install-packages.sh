#!/usr/bin/env bash
# install-packages.sh — install the Debian packages pg_infer needs, when
# they are missing.  Needs root (or sudo) to install anything.
#
#   scripts/install-packages.sh              build, run and test (CI: .ci/run;
#                                            before a first `make test`)
#   scripts/install-packages.sh --demo       build and run only (make demo)
#   scripts/install-packages.sh --missing [--demo]
#                                            print the missing ones, install nothing
#
# Only missing packages are installed (apt-get install --no-upgrade, without
# recommended packages); nothing already installed is upgraded unless apt
# needs a newer version as a dependency of a missing one, and then it says so
# before installing.  PostgreSQL 15 comes from Debian 12's own archive.
# Debian's packages do their usual setup: a newly installed postgresql-15
# creates the cluster 15/main, started by the postgresql service, and
# prometheus-postgres-exporter (tests only) enables its own service.
# CUDA is not installed here: when /usr/local/cuda (or nvcc on PATH)
# exists, the build uses it.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
DEMO_PACKAGES=(
    build-essential                          # gcc, make
    "postgresql-$PG_MAJOR"                   # the server
    "postgresql-server-dev-$PG_MAJOR"        # PGXS, server headers, pg_regress, clang for bitcode
)
TEST_PACKAGES=(
    "postgresql-$PG_MAJOR-pgtap"             # pgTAP extension
    libtap-parser-sourcehandler-pgtap-perl   # pg_prove
    prometheus-postgres-exporter             # test/exporter_test.sh (contrib/prometheus)
    curl                                     # test/exporter_test.sh fetches /metrics
    "postgresql-$PG_MAJOR-plproxy"           # test/scale_out_test.sh (contrib/scale-out/router.sql)
)

only_list=0
packages=("${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
for argument in "$@"; do
    case "$argument" in
        --demo) packages=("${DEMO_PACKAGES[@]}") ;;
        --missing) only_list=1 ;;
        *) echo "usage: $0 [--demo] [--missing]" >&2; exit 2 ;;
    esac
done

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if [ "$only_list" = 1 ]; then
    echo "${missing[*]}"
    exit 0
fi
if [ "${#missing[@]}" -eq 0 ]; then
    echo "# Debian packages: all present (${packages[*]})"
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
apt_install=(apt-get install -y -q --no-install-recommends --no-upgrade)
# What apt will do beyond the missing packages: their dependencies, and any
# installed package it must upgrade for them ("Inst NAME [OLD] (NEW ...)").
plan=$("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" -s "${missing[@]}" | grep '^Inst ' || true)
upgrades=$(sed -nE 's/^Inst ([^ ]+) \[([^]]+)\] \(([^ ]+).*/\1 \2 -> \3/p' <<<"$plan")
echo "# apt installs $(grep -c . <<<"$plan") packages (the missing ones and their dependencies)"
if [ -n "$upgrades" ]; then
    echo "# apt must upgrade these installed packages for them:"
    sed 's/^/#   /' <<<"$upgrades"
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" "${missing[@]}"
