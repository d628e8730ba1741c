#!/usr/bin/env bash
# Runs every test in the workspace: unit tests, property tests and the end-to-end tests that start the real
# sidecar and certs-agent binaries on loopback. Needs only the Rust toolchain, plus the `openssl` command
# for the interoperability test, which this script installs (Debian/Ubuntu) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v openssl >/dev/null 2>&1; then
  echo "test.sh: installing the openssl command (used as an independent TLS client and verifier)" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && $sudo apt-get install -y -qq openssl >/dev/null
fi

exec cargo test --workspace --locked --no-fail-fast "$@"
