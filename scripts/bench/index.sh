#!/usr/bin/env bash
# Benchmark `usmtkit index`: peak memory and time on a many-entry store, and
# hashing throughput on a profile store against b3sum and xxhsum over the
# same files. Page cache warm (every tool runs after a warming pass).
#
#   scripts/bench/index.sh                     # 1,000,000 entries, 1 GiB profile
#   FILES=100000 SIZE=300M scripts/bench/index.sh
#
# Environment: FILES (entries of the many store), SIZE (profile bytes),
# WORK (scratch folder, default /tmp/usmtkit-bench-index; kept between runs
# so stores are generated once), THREADS (index --threads, default 4).
set -euo pipefail

FILES=${FILES:-1000000}
SIZE=${SIZE:-1G}
THREADS=${THREADS:-4}
WORK=${WORK:-/tmp/usmtkit-bench-index}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for t in b3sum xxhsum /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "index.sh: $t is not installed (apt-get install b3sum xxhash time)" >&2; exit 1; }
done
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore)
U="$WORK/bin/usmtkit"

many="$WORK/many-$FILES"
if [ ! -d "$many/store" ]; then
	echo "generating $FILES entries in $many ..." >&2
	"$WORK/bin/mkstore" -kind many -files "$FILES" -out "$many" >/dev/null
fi
prof="$WORK/profile-$SIZE"
. "$ROOT/scripts/bench/lib.sh"
profile_store "$prof" "$WORK/bin/mkstore" -size "$SIZE"

# timed LABEL CMD...: runs CMD under /usr/bin/time, prints a row.
timed() {
	local label=$1
	shift
	local tf
	tf=$(mktemp)
	/usr/bin/time -f '%e %M' -o "$tf" "$@" >/dev/null 2>>"$WORK/stderr.log" || true
	read -r secs kib <"$tf"
	rm -f "$tf"
	printf '%-34s %9s s %10s KiB\n' "$label" "$secs" "$kib"
	LAST_SECS=$secs
}

echo
echo "== many-entry store: $FILES files ($many/store), page cache warm"
find "$many/store" >/dev/null # warm the dentry/inode cache
printf '%-34s %11s %14s\n' "command" "elapsed" "peak RSS"
if "$U" ls --help >/dev/null 2>&1; then
	timed "usmtkit ls -R" "$U" -q ls -R "$many/store"
else
	echo "usmtkit ls -R                      (no ls command in this build: skipped)"
fi
rm -f "$WORK/many.manifest"
timed "usmtkit index --no-hash" "$U" -q index --no-hash -o "$WORK/many.manifest" "$many/store"
rm -f "$WORK/many.manifest"
timed "usmtkit index (xxh64)" "$U" -q index --threads "$THREADS" -o "$WORK/many.manifest" "$many/store"
ls -l "$WORK/many.manifest" | awk '{printf "manifest: %d bytes (%.0f bytes/entry)\n", $5, $5/'"$FILES"'}'
rm -f "$WORK/many.manifest"

echo
bytes=$(find "$prof/store" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
nfiles=$(find "$prof/store" -type f | wc -l)
echo "== profile store: $nfiles files, $bytes bytes ($prof/store), page cache warm"
find "$prof/store" -type f -print0 | xargs -0 cat >/dev/null # warm
printf '%-34s %11s %14s %10s %8s\n' "command" "elapsed" "peak RSS" "MiB/s" "vs index"
row() {
	local label=$1 secs=$2 kib=$3
	awk -v l="$label" -v s="$secs" -v k="$kib" -v b="$bytes" -v base="$BASE" 'BEGIN {
		r = (s > 0) ? b / 1048576 / s : 0
		printf "%-34s %9.2f s %10s KiB %10.0f %7.2fx\n", l, s, k, r, (base > 0 && s > 0) ? base / s : 0 }'
}
run3() { # best of 3 runs: prints "secs kib"
	local best="" bestk="" tf
	for _ in 1 2 3; do
		tf=$(mktemp)
		/usr/bin/time -f '%e %M' -o "$tf" bash -c "$1" >/dev/null 2>>"$WORK/stderr.log" || true
		read -r s k <"$tf"
		rm -f "$tf"
		if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$s bestk=$k; fi
	done
	echo "$best $bestk"
}
BASE=0
read -r s k < <(run3 "rm -f '$WORK/prof.manifest'; '$U' -q index --threads $THREADS -o '$WORK/prof.manifest' '$prof/store'")
BASE=$s
row "usmtkit index --threads $THREADS" "$s" "$k"
read -r s k < <(run3 "rm -f '$WORK/prof.manifest'; '$U' -q index --threads 1 -o '$WORK/prof.manifest' '$prof/store'")
row "usmtkit index --threads 1" "$s" "$k"
read -r s k < <(run3 "find '$prof/store' -type f -print0 | xargs -0 b3sum")
row "b3sum (find | xargs)" "$s" "$k"
read -r s k < <(run3 "find '$prof/store' -type f -print0 | xargs -0 xxhsum -H1")
row "xxhsum -H1 (find | xargs)" "$s" "$k"
read -r s k < <(run3 "find '$prof/store' -type f -print0 | xargs -0 cat")
row "cat (find | xargs)" "$s" "$k"
rm -f "$WORK/prof.manifest"
echo
echo "vs index = usmtkit index time / tool time (below 1: usmtkit is faster)."
echo "peak RSS of the xargs rows is the largest single process of the pipeline."
