#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this with CI=true).
# On a fresh Debian machine, run as root: it installs what the tests need.
# Under CI=true, tests that need FUSE, ntfs-3g, tar or zstd FAIL when those
# are missing instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/sbin:/usr/sbin"

# command -> Debian package
tools=(
  fusermount3:fuse3 ntfs-3g:ntfs-3g mkntfs:ntfs-3g zstd:zstd tar:tar
  mksquashfs:squashfs-tools unsquashfs:squashfs-tools xxhsum:xxhash getfattr:attr
  mkfs.vfat:dosfstools fusefat:fusefat b3sum:b3sum squashfuse:squashfuse
  archivemount:archivemount fuser:psmisc gcc:gcc mkfs.exfat:exfatprogs
  mount.exfat-fuse:exfat-fuse losetup:mount file:file curl:curl
)
missing=()
for t in "${tools[@]}"; do
  cmd=${t%%:*} pkg=${t##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ -x /usr/bin/time ] || missing+=(time)
# The cgo build links the system zlib (store/mig_inflate_cgo.go).
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ]; then
    echo "installing: $pkgs"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "warning: missing packages ($pkgs); run as root to install them; the tests needing them will skip (or fail under CI=true)" >&2
  fi
fi
if [ ! -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
  modprobe fuse 2>/dev/null || true
fi

command -v go >/dev/null || { echo "go is not installed (need Go 1.26+)" >&2; exit 1; }

echo "== S3 test server (SeaweedFS, scripts/s3server.sh; built once into the cache)"
# One server for the whole run; the object-storage tests read its endpoint
# from USMTKIT_S3_ENDPOINT. If it cannot start they fail under CI=true.
s3dir=$(mktemp -d /tmp/usmtkit-s3.XXXXXX)
# Every test's temporary files (t.TempDir, os.MkdirTemp) go below one folder
# of this run, so the leftover-mount check at the end looks at this run's
# mounts only, not at benchmarks or other checkouts' tests on the machine.
run_tmp=$(mktemp -d /tmp/usmtkit-run.XXXXXX)
chmod 1777 "$run_tmp" # like /tmp: tests run some commands as another user
# mounts_below DIR: the mount points at or below DIR (mountinfo field 5).
mounts_below() { awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo; }
cleanup() {
  scripts/s3server.sh stop "$s3dir"; rm -rf "$s3dir"
  # Never remove a folder with a mount below it: rm would delete through it.
  if [ -z "$(mounts_below "$run_tmp")" ]; then rm -rf "$run_tmp"; fi
}
trap cleanup EXIT
export AWS_ACCESS_KEY_ID=usmtkit AWS_SECRET_ACCESS_KEY=usmtkit-secret
if scripts/s3server.sh build && ep=$(scripts/s3server.sh start "$s3dir" 18333); then
  export USMTKIT_S3_ENDPOINT=$ep
  echo "S3 server at $ep"
else
  echo "warning: the S3 test server did not start; the object-storage tests will skip (or fail under CI=true)" >&2
fi

export TMPDIR=$run_tmp
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
set +e
go test -race -count=1 -timeout 20m ./... 2>&1 | tee /tmp/usmtkit-test.log | grep -v -E '^(=== (RUN|PAUSE|CONT)|--- PASS)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "FAIL: go test exited $status (full log: /tmp/usmtkit-test.log)" >&2
  exit "$status"
fi
echo "== without cgo: the pure-Go zstd encoder and a build without a C compiler"
CGO_ENABLED=0 go build -o /dev/null ./cmd/usmtkit
go build -tags nozlib -o /dev/null ./cmd/usmtkit # gcc without zlib's headers
go test -count=1 -tags nozlib -timeout 5m ./store -run MIG
CGO_ENABLED=0 go test -count=1 -timeout 5m ./compress
echo "== FUSE tests with GOMAXPROCS=1 (deadlocks between test code and server show here)"
GOMAXPROCS=1 go test -count=1 -timeout 5m ./fusefs ./cmd/usmtkit -run 'Mount'
echo "== leftover mounts"
left=$(mounts_below "$run_tmp")
if [ -n "$left" ]; then
  echo "$left" >&2
  echo "FAIL: a test left a mount behind (above; the run's folder $run_tmp is kept)" >&2
  exit 1
fi
echo "all tests passed"
