#!/usr/bin/env bash
# validate.sh — run test_structured, writing its outputs, and check them
# with ajv (npm) installed under $BUILDDIR/structured/npm.
#   make structured-check
set -euo pipefail
BUILDDIR=${BUILDDIR:-build}
NPM=${NPM:-npm}
DIR=$BUILDDIR/structured/npm
if [ ! -d "$DIR/node_modules/ajv" ]; then
    command -v "$NPM" >/dev/null || { echo "not ok - npm not found (needed for ajv)"; exit 1; }
    mkdir -p "$DIR"
    (cd "$DIR" && "$NPM" install --no-audit --no-fund --prefix . ajv@8 >/dev/null)
fi
OUT=$BUILDDIR/structured/outputs.jsonl
PGI_STRUCTURED_OUT=$OUT PGI_STRUCTURED_BUILDDIR=$BUILDDIR "$BUILDDIR/test/unit/test_structured"
NODE_PATH=$DIR/node_modules node test/structured/validate.js "$OUT"
