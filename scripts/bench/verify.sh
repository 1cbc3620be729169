#!/usr/bin/env bash
# Benchmark `usmtkit verify` (data level, against a manifest and without one)
# against b3sum, xxhsum -H1 and cat over the same files of a generated
# profile store: page cache warm (best of 3), and cold (caches dropped
# before each run; needs root, else the cold table is skipped).
#
#   scripts/bench/verify.sh                  # 1 GiB profile store
#   SIZE=300M scripts/bench/verify.sh
#
# Environment: SIZE (profile bytes), FILES (profile file count, 0 = one per
# 256 KiB), THREADS (verify --threads, default 4), WORK (scratch folder,
# default /tmp/usmtkit-bench-verify; stores are kept between runs).
set -euo pipefail

SIZE=${SIZE:-1G}
FILES=${FILES:-0}
THREADS=${THREADS:-4}
WORK=${WORK:-/tmp/usmtkit-bench-verify}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for t in b3sum xxhsum; do
	command -v "$t" >/dev/null || { echo "verify.sh: $t is not installed (apt-get install b3sum xxhash)" >&2; exit 1; }
done
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore)
U="$WORK/bin/usmtkit"

prof="$WORK/profile-$SIZE-$FILES"
. "$ROOT/scripts/bench/lib.sh"
profile_store "$prof" "$WORK/bin/mkstore" -size "$SIZE" -files "$FILES"
store="$prof/store"
man="$WORK/profile.manifest"
"$U" -q index --force --threads "$THREADS" -o "$man" "$store" >/dev/null

bytes=$(find "$store" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
nfiles=$(find "$store" -type f | wc -l)

declare -A CMD
NAMES=("usmtkit verify --manifest" "usmtkit verify (no manifest)" "usmtkit verify --level structure" "b3sum" "xxhsum -H1" "cat")
CMD["usmtkit verify --manifest"]="'$U' -q verify --threads $THREADS --manifest '$man' '$store'"
CMD["usmtkit verify (no manifest)"]="'$U' -q verify --threads $THREADS '$store'"
CMD["usmtkit verify --level structure"]="'$U' -q verify --level structure --manifest '$man' '$store'"
CMD["b3sum"]="find '$store' -type f -print0 | xargs -0 b3sum"
CMD["xxhsum -H1"]="find '$store' -type f -print0 | xargs -0 xxhsum -H1"
CMD["cat"]="find '$store' -type f -print0 | xargs -0 cat"

now() { date +%s.%N; }

# measure CMD [cold]: best of 3 (warm) or best of 2, caches dropped before each (cold).
measure() {
	local cmd=$1 cold=${2:-} best="" s e d
	local runs=3
	[ -n "$cold" ] && runs=2
	for ((i = 0; i < runs; i++)); do
		if [ -n "$cold" ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
		s=$(now)
		bash -c "$cmd" >/dev/null 2>&1 || true # verify exits 3 on damage; there is none here
		e=$(now)
		d=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.3f", b-a}')
		if [ -z "$best" ] || awk -v a="$d" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$d; fi
	done
	echo "$best"
}

table() {
	local cold=${1:-}
	declare -A T
	for n in "${NAMES[@]}"; do T[$n]=$(measure "${CMD[$n]}" "$cold"); done
	local base=${T["usmtkit verify --manifest"]}
	printf '%-34s %9s %10s %12s\n' "command" "seconds" "MiB/s" "verify/this"
	for n in "${NAMES[@]}"; do
		awk -v n="$n" -v s="${T[$n]}" -v b="$bytes" -v base="$base" 'BEGIN {
			printf "%-34s %9.3f %10.0f %11.2fx\n", n, s, (s > 0 ? b / 1048576 / s : 0), (s > 0 ? base / s : 0) }'
	done
}

echo "== profile store: $nfiles files, $bytes bytes ($store); threads $THREADS; $(nproc) CPUs"
echo
echo "-- page cache warm (best of 3)"
find "$store" -type f -print0 | xargs -0 cat >/dev/null
table
echo
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
	echo "-- cold cache (echo 3 > /proc/sys/vm/drop_caches before each run; best of 2)"
	table cold
else
	echo "-- cold cache: skipped (needs root and a writable /proc/sys/vm/drop_caches)"
fi
echo
echo "verify/this = usmtkit verify --manifest time / this command's time (above 1: the command is faster)."
echo "the structure level reads no content; its MiB/s is nominal."

# Archive verify (mount issue, point 4): `usmtkit verify ARCHIVE` (every
# header and chunk decoded and checked, both checksums) against `zstd -t`
# on a `tar | zstd -3` of the same store, page cache warm, medians of 3,
# with the CPU seconds (user+sys) beside the wall time. ARCHIVE=0 skips it.
if [ "${ARCHIVE:-1}" != 0 ]; then
	arch="$prof/store.usmtkit.tar.zst"
	tzst="$prof/store.tar.zst"
	[ -f "$arch" ] || "$U" -q compress "$store" -o "$arch" >/dev/null
	[ -f "$tzst" ] || tar -C "$store" -cf - . | zstd -q -T0 -3 -o "$tzst"
	cat "$arch" "$tzst" >/dev/null
	# median3 CMD: "wall cpu" medians of 3 runs.
	median3() {
		local i out=()
		for i in 1 2 3; do
			/usr/bin/time -o "$WORK/time" -f '%e %U %S' bash -c "$1" >/dev/null 2>&1 || true
			out+=("$(tail -1 "$WORK/time")")
		done
		local w c
		w=$(printf '%s\n' "${out[@]}" | awk '{print $1}' | sort -n | sed -n 2p)
		c=$(printf '%s\n' "${out[@]}" | awk '{print $2 + $3}' | sort -n | sed -n 2p)
		echo "$w $c"
	}
	echo
	echo "-- archive verify (page cache warm, medians of 3; load: $(uptime | sed 's/.*load average: //'))"
	v=$(median3 "'$U' -q verify '$arch'")
	z=$(median3 "zstd -qt '$tzst'")
	printf '%-34s %9s %9s\n' "command" "seconds" "cpu s"
	printf '%-34s %9s %9s\n' "usmtkit verify ARCHIVE" $v
	printf '%-34s %9s %9s\n' "zstd -t (tar | zstd -3)" $z
	awk -v v="$v" -v z="$z" 'BEGIN { split(v, a, " "); split(z, b, " ");
		printf "ratio usmtkit verify / zstd -t: wall %.2f, cpu %.2f (goal: wall <= 1.5)\n", a[1] / b[1], a[2] / b[2] }'
fi
