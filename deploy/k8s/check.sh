#!/usr/bin/env bash
# Renders every overlay of deploy/k8s with kubectl kustomize and validates each object against
# its schema (deploy/k8s/validate). tests/Server.Tests/Deploy checks the same renderings against
# the running server (probe paths, ports, metric names).
set -euo pipefail
cd "$(dirname "$0")"
# The packages declare node >= 22; their validators run on Debian 12's node 20 (the check fails on a broken manifest there).
npm ci --no-audit --no-fund --loglevel=error --prefix validate >/dev/null
for overlay in overlays/*/; do
  name=$(basename "$overlay")
  echo "k8s: $name"
  kubectl kustomize "$overlay" | node validate/validate.mjs
done
