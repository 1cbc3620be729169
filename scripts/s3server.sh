#!/usr/bin/env bash
# A real S3-compatible server (SeaweedFS's `weed mini`) on loopback, for the
# object-storage tests and scripts/bench/s3.sh.
#   scripts/s3server.sh build          build weed once into the cache (about 8 min on 2 cores)
#   scripts/s3server.sh start DIR PORT start on 127.0.0.1:PORT with data in DIR; prints the endpoint
#   scripts/s3server.sh stop DIR       stop the server started with DIR
#   scripts/s3server.sh kill DIR       kill it at once (SIGKILL), as a crash would
# The binary is cached OUTSIDE the checkout (CI runs in a fresh clone but keeps
# $HOME and the Go caches). `go install` of weed is refused (its go.mod has
# replace directives), so the module source is downloaded and built in place.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/usmtkit/weed-$WEED_VERSION
WEED=$CACHE/weed

build() {
  [ -x "$WEED" ] && return 0
  mkdir -p "$CACHE"
  local dir src
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "s3server: go mod download of seaweedfs failed" >&2; return 1; }
  src=$(mktemp -d "$CACHE/src.XXXXXX")
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && go build -o "$WEED.tmp" ./weed)
  mv "$WEED.tmp" "$WEED"
  rm -rf "$src"
}

start() {
  local data=$1 port=$2
  build
  mkdir -p "$data"
  : "${AWS_ACCESS_KEY_ID:=usmtkit}" "${AWS_SECRET_ACCESS_KEY:=usmtkit-secret}"
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  # Everything on loopback; the other servers on the ports after PORT (their
  # gRPC ports are those + 10000), so two servers on PORTs 10 apart coexist;
  # no WebDAV, admin UI, table catalogs or telemetry (no traffic off the machine).
  # stdout/stderr of the whole group go to the log, so a caller reading
  # this script's output (tests) is not held open by the server.
  (cd "$data" && exec setsid "$WEED" mini -dir="$data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
     -s3.port="$port" -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
     -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 -admin.port.legacy=0 \
     -admin.port=$((port + 4)) -master.telemetry=false) >"$data/weed.log" 2>&1 </dev/null &
  echo $! >"$data/weed.pid"
  local i
  for i in $(seq 1 120); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$data/weed.pid")" 2>/dev/null || { echo "s3server: weed exited; log: $data/weed.log" >&2; tail -5 "$data/weed.log" >&2; return 1; }
    sleep 0.5
  done
  echo "s3server: no answer on port $port after 60 s; log: $data/weed.log" >&2
  return 1
}

stop() {
  local data=$1 pid
  [ -f "$data/weed.pid" ] || return 0
  pid=$(cat "$data/weed.pid")
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 -- "-$pid" 2>/dev/null || true
  rm -f "$data/weed.pid"
}

kill9() {
  local data=$1
  [ -f "$data/weed.pid" ] || return 0
  kill -9 -- "-$(cat "$data/weed.pid")" 2>/dev/null || true
  rm -f "$data/weed.pid"
}

case ${1:-} in
  build) build ;;
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  kill) kill9 "$2" ;;
  path) echo "$WEED" ;;
  *) echo "usage: $0 build | start DIR PORT | stop DIR | kill DIR | path" >&2; exit 2 ;;
esac
