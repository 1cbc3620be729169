#!/usr/bin/env bash
# Benchmark depth: a store holding one chain of 4,096 folders (the
# deep-tree case of fixtures.HostileCatalogue; its paths are far past
# PATH_MAX). Issue #16 measured `usmtkit info` at 41 s on it against 0.3 s
# for `find`, and `find` on a mount of it at 118 s: every lookup walked
# the path from the root again. Goal: info within 3x find.
#
#   scripts/bench/deep.sh                  # 4,096 levels, 3 runs
#   LEVELS=8192 RUNS=5 scripts/bench/deep.sh
#
# Rows, each the median of RUNS runs (page cache warm; each mount row on a
# fresh mount, so its FUSE caches are cold):
#
#   find             find STORE (the anchor)
#   usmtkit info     a full walk with a summary
#   usmtkit index    index --no-hash (a walk writing a manifest)
#   usmtkit extract  the store's files written to a new folder
#   mkdir chain      LEVELS nested folders made with mkdirat/openat
#                    (python3): extract's anchor, the least any copy of
#                    the tree costs; cp -a and tar stop at PATH_MAX
#                    ("File name too long") and cannot copy it at all
#   find on mount    find over `usmtkit mount STORE` (a folder store)
#
# then the ratios to find (extract's also to the mkdir chain). Environment: LEVELS (default 4096), RUNS
# (default 3), WORK (scratch folder, default /tmp/usmtkit-bench-deep; the
# store is kept between runs), TIMEOUT (seconds per command, default 300),
# OLD (another usmtkit binary to time the same rows with, e.g. one built
# from a commit before the fix), BUILD (0: reuse $WORK/bin). Mounting
# needs root or fusermount3.
set -euo pipefail

LEVELS=${LEVELS:-4096}
RUNS=${RUNS:-3}
TIMEOUT=${TIMEOUT:-300}
WORK=${WORK:-/tmp/usmtkit-bench-deep}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/bench/lib.sh"

for t in find python3 timeout; do
	command -v "$t" >/dev/null || { echo "deep.sh: $t is not installed" >&2; exit 1; }
done
mkdir -p "$WORK/bin" "$WORK/mnt"
[ "${BUILD:-1}" = 0 ] || (cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore)
MNT="$WORK/mnt"
if grep -q " $MNT " /proc/self/mountinfo; then fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; fi

data="$WORK/deep-$LEVELS"
if [ ! -d "$data/store" ]; then
	echo "building a $LEVELS-deep store in $data ..." >&2
	rm -rf "$data"
	"$WORK/bin/mkstore" -kind deep -levels "$LEVELS" -out "$data" >/dev/null
fi
STORE="$data/store"
find "$STORE" >/dev/null # warm the dentry and inode caches

# t CMD...: one timed run under the timeout.
t() { seconds_of timeout "$TIMEOUT" "$@"; }

# mountfind U: mounts STORE with usmtkit U and times find on it.
mountfind() {
	local u=$1 s
	"$u" mount --background "$STORE" "$MNT" >/dev/null 2>&1 || { echo fail; return; }
	s=$(t find "$MNT")
	"$u" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
	echo "$s"
}

# extract U: times extracting STORE with usmtkit U into a fresh folder.
extract() {
	local u=$1 s
	rm -rf "$WORK/out"
	s=$(t "$u" -q extract "$STORE" "$WORK/out")
	rm -rf "$WORK/out"
	echo "$s"
}

# mkchain: times making LEVELS nested folders, each relative to its parent.
mkchain() {
	local s
	rm -rf "$WORK/out"
	mkdir "$WORK/out"
	s=$(t python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(int(sys.argv[2])):
    os.mkdir("d", dir_fd=fd)
    n = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = n
' "$WORK/out" "$LEVELS")
	rm -rf "$WORK/out"
	echo "$s"
}

declare -A R
bins=(new)
[ -n "${OLD:-}" ] && bins+=(old)
for run in $(seq "$RUNS"); do
	R[find]+="$(t find "$STORE") "
	R[mk]+="$(mkchain) "
	for b in "${bins[@]}"; do
		u="$WORK/bin/usmtkit"
		[ "$b" = old ] && u=$OLD
		R[$b-info]+="$(t "$u" -q info "$STORE") "
		rm -f "$WORK/m.manifest"
		R[$b-index]+="$(t "$u" -q index --no-hash -o "$WORK/m.manifest" "$STORE") "
		R[$b-extract]+="$(extract "$u") "
		R[$b-mount]+="$(mountfind "$u") "
	done
	echo "run $run/$RUNS done" >&2
done

med() { median_of ${R[$1]}; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.1fx", a / b }'; }

f=$(med find)
echo
echo "== $LEVELS-deep store ($STORE), page cache warm, $(nproc) vCPU, load $(uptime | sed 's/.*load average: //'), medians of $RUNS"
printf '%-28s %10s %10s\n' "command" "seconds" "vs find"
printf '%-28s %10s %10s\n' "find" "$f" "1.0x"
printf '%-28s %10s %10s\n' "mkdir chain" "$(med mk)" "$(ratio "$(med mk)" "$f")"
for b in "${bins[@]}"; do
	label=usmtkit
	[ "$b" = old ] && label="usmtkit (OLD)"
	for row in info index extract mount; do
		name="$label $row"
		[ "$row" = mount ] && name="find on $label mount"
		v=$(med "$b-$row")
		printf '%-28s %10s %10s\n' "$name" "$v" "$(ratio "$v" "$f")"
	done
done
echo
echo "extract vs the mkdir chain: $(ratio "$(med new-extract)" "$(med mk)")"
echo "goal: usmtkit info within 3x find ($(ratio "$(med new-info)" "$f") measured); the VM is shared and noisy, compare medians"
