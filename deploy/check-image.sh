#!/usr/bin/env bash
# CI's stand-in for `docker build` + `docker run` (Docker does not run on our machines): runs the
# Dockerfile's publish command (deploy/publish.sh, which the Dockerfile runs too) into a temporary
# folder, checks what the image would hold, then starts the published server as a non-root user
# with the image's environment and waits for /health/ready.
#   deploy/check-image.sh            (about 1-3 minutes once `dotnet build` has run)
#   deploy/check-image.sh DIR        checks an existing publish output instead of publishing
set -euo pipefail
cd "$(dirname "$0")/.."

# The limit: the publish is 72 MB (2026-12, ONNX Runtime 1.32.0): 47 MB of linux-x64 native libraries (ONNX Runtime
# 33, SkiaSharp 12, SQLite, ours), 19 MB of demo models, 6 MB of managed assemblies. 150 MB
# leaves room to grow but fails long before a publish without the runtime identifier (764 MB,
# every platform's natives) or with a second copy of ONNX Runtime.
max_mb=${SERVING_IMAGE_MAX_MB:-150}

grep -q '^RUN deploy/publish.sh /app$' Dockerfile \
  || { echo "check-image: the Dockerfile no longer runs 'deploy/publish.sh /app'; keep this check in step" >&2; exit 1; }

work=$(mktemp -d /tmp/serving-image.XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

if [ $# -ge 1 ]; then
  cp -r "$1" "$work/app"
else
  deploy/publish.sh "$work/app" >"$work/publish.log" 2>&1 || { cat "$work/publish.log"; exit 1; }
fi
chmod -R a+rX "$work/app"

size_mb=$(du -sm "$work/app" | cut -f1)
echo "check-image: publish output ${size_mb} MB (limit ${max_mb} MB)"
[ "$size_mb" -le "$max_mb" ] || { du -sm "$work/app"/* "$work/app"/runtimes/* 2>/dev/null | sort -rn | head -15; echo "check-image: publish output over ${max_mb} MB" >&2; exit 1; }
[ -f "$work/app/libserving_kernels.so" ] || { echo "check-image: libserving_kernels.so missing from the publish output" >&2; exit 1; }
[ -f "$work/app/models/kjv-gemma3/config.json" ] || { echo "check-image: the demo model is missing from the publish output" >&2; exit 1; }
# With the runtime identifier the linux-x64 natives sit beside the assemblies; a runtimes/ folder
# means some other platform's came along.
[ ! -d "$work/app/runtimes" ] || { ls "$work/app/runtimes" >&2; echo "check-image: runtimes/ in the publish output (other platforms' native libraries)" >&2; exit 1; }

# The image's user is non-root (APP_UID); CI runs as root, so drop to nobody. HOME is not
# writable there, as under Kubernetes' readOnlyRootFilesystem; only the data folder is.
mkdir -p "$work/data"
as_user=()
if [ "$(id -u)" = 0 ]; then
  chown nobody "$work/data"
  as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
# Node.js is on CI machines already (.ci/run), curl and Python may not be.
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')

# The HTTP status of GET $1 on the server, through bash's /dev/tcp.
status_of() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 0
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
  IFS= read -r -t 5 line <&3 || true
  exec 3<&- 3>&-
  echo "$line" | cut -d' ' -f2
}

# The Dockerfile's ENV, with the port and data folder moved to free ones.
env -i PATH="$PATH" HOME=/nonexistent \
  ASPNETCORE_HTTP_PORTS="$port" \
  Serving__DataDirectory="$work/data" \
  Serving__Telemetry__JsonLogs=true \
  "${as_user[@]}" dotnet "$work/app/Serving.Server.dll" >"$work/server.log" 2>&1 &
server_pid=$!

ready=
for _ in $(seq 1 240); do
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  if [ "$(status_of /health/ready 2>/dev/null)" = 200 ]; then ready=1; break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  tail -40 "$work/server.log"
  echo "check-image: the published server did not report ready in 120 s" >&2
  exit 1
fi
echo "check-image: ready on port $port as $(stat -c %U "/proc/$server_pid")"

# Logs are JSON lines (what a container's log collector reads).
head -1 "$work/server.log" | node -e 'JSON.parse(require("fs").readFileSync(0, "utf8"))' \
  || { head -3 "$work/server.log"; echo "check-image: the log is not JSON lines" >&2; exit 1; }

kill -TERM "$server_pid"
for _ in $(seq 1 120); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$server_pid" 2>/dev/null; then echo "check-image: the server did not stop within 60 s of SIGTERM" >&2; exit 1; fi
wait "$server_pid" || { tail -20 "$work/server.log"; echo "check-image: the server exited with an error" >&2; exit 1; }
server_pid=
echo "check-image: ok"
