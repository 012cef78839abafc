#!/usr/bin/env bash
# The API contract (docs/api.md, "The API contract"), run by .ci/run after the cargo test steps:
#   1. buf lint (STANDARD + COMMENTS) of proto/;
#   2. buf breaking: proto/ against proto-released/, the last released API;
#   3. examples/typescript-signup: code generated from proto/, compiled with tsc, and its node:test
#      suite run against `certification-service serve --sandbox` on a fresh temporary database.
# Everything it needs comes from npm (`npm ci`, lockfiles committed) into git-ignored node_modules.
# CERTIFICATION_SERVICE_BIN: a service binary to test against; unset, the script runs
# `cargo build --locked --bin certification-service` (a no-op after .ci/run's cargo test steps)
# and uses target/debug/certification-service.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
npm_ci() { (cd "$1" && npm ci --no-audit --no-fund --loglevel=error); }

echo "== contract: buf lint and buf breaking against proto-released/"
npm_ci .ci
buf=.ci/node_modules/.bin/buf
"$buf" --version
"$buf" lint
"$buf" breaking --against proto-released
# buf.yaml excepts the go_package/java_package rules only while the baseline predates them.
if grep -q '^option go_package' proto-released/certification/v1/certification.proto &&
  grep -q '^ *except:' buf.yaml; then
  echo "proto-released/ carries go_package and java_package now: delete breaking.except from buf.yaml" >&2
  exit 1
fi
echo "buf lint and buf breaking: clean"

echo "== contract: examples/typescript-signup against serve --sandbox"
if [ -z "${CERTIFICATION_SERVICE_BIN:-}" ]; then
  cargo build --quiet --locked --bin certification-service
  CERTIFICATION_SERVICE_BIN=$PWD/target/debug/certification-service
fi
# The tests run in the example's directory: a relative path is taken from the repository root.
[[ $CERTIFICATION_SERVICE_BIN = /* ]] || CERTIFICATION_SERVICE_BIN=$PWD/$CERTIFICATION_SERVICE_BIN
export CERTIFICATION_SERVICE_BIN
npm_ci examples/typescript-signup
(
  cd examples/typescript-signup
  rm -rf src/gen dist
  npm run --silent build
  npm test
)
echo "== contract: done in $((SECONDS - started)) s"
