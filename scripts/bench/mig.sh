#!/usr/bin/env bash
# Benchmark `usmtkit verify X.MIG` (every record's zlib payload inflated
# and its Adler-32 checked) against the zlib tools inflating the same data
# at the same compression level: pigz -d -z -p 1 and zlib-flate -uncompress
# (qpdf). The fixture is an unencrypted USMT.MIG of varied record sizes
# (scripts/bench/migmk: log-uniform from 64 B to 8 MiB, text-like data
# deflated at level 6); the anchors read content.z, the records' contents
# as one zlib stream (they cannot read a stream per record), so usmtkit
# also pays for walking the chain and restarting zlib per record.
#
#   scripts/bench/mig.sh                 # the 64 MiB and the 1 GiB MIG
#   SIZES=256M scripts/bench/mig.sh
#
# Page cache warm (the inputs are read once first), RUNS (default 3)
# alternating runs, medians of wall time and peak RSS (/usr/bin/time).
# Goal (issue 12): usmtkit verify at least as fast as pigz -d -z -p 1,
# peak RSS under 64 MiB whatever the record sizes. WORK (default
# /tmp/usmtkit-bench-mig) keeps the fixtures between runs. The machine
# this runs on is a shared 2-vCPU VM: compare medians of several runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$PATH:/usr/local/go/bin"
SIZES=${SIZES:-64M 1G}
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/usmtkit-bench-mig}
. "$ROOT/scripts/bench/lib.sh"

for t in pigz zlib-flate; do
	command -v "$t" >/dev/null || { echo "mig.sh: $t is not installed (apt-get install pigz qpdf)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "mig.sh: /usr/bin/time is not installed (apt-get install time)" >&2; exit 1; }
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/migmk" ./scripts/bench/migmk)
U="$WORK/bin/usmtkit"

# mig_fixture DIR SIZE: DIR holds a fixture of this generator's version.
mig_fixture() {
	local dir=$1 size=$2 want have
	want=$("$WORK/bin/migmk" -generation)
	have=$(sed -n 's/^generation=//p' "$dir/stats" 2>/dev/null || echo none)
	if [ "$have" != "$want" ]; then
		echo "generating a $size USMT.MIG in $dir ..." >&2
		rm -rf "$dir"
		"$WORK/bin/migmk" -size "$size" -out "$dir"
	fi
}

# measure CMD: sets M_WALL and M_CPU (s, user + system) and M_RSS (KiB)
# of one run. CPU time is the steadier number on a shared machine.
measure() {
	local f="$WORK/time.out"
	/usr/bin/time -f '%e %M %U %S' -o "$f" bash -c "$1" >/dev/null 2>"$WORK/err.out" || {
		echo "failed: $1" >&2
		cat "$WORK/err.out" >&2
		exit 1
	}
	local u s
	read -r M_WALL M_RSS u s < <(tail -1 "$f")
	M_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

median() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for size in $SIZES; do
	dir="$WORK/mig-$size"
	mig_fixture "$dir" "$size"
	. <(sed 's/^/S_/' "$dir/stats")
	cat "$dir/USMT.MIG" "$dir/content.z" >/dev/null # page cache warm
	declare -A CMD=(
		[usmtkit]="'$U' -q verify '$dir/USMT.MIG'"
		[pigz]="pigz -d -z -p 1 -c < '$dir/content.z'"
		[zlibflate]="zlib-flate -uncompress < '$dir/content.z'"
	)
	keys=(usmtkit pigz zlibflate)
	declare -A WALL=() RSS=() CPU=()
	for ((run = 1; run <= RUNS; run++)); do
		for k in "${keys[@]}"; do
			measure "${CMD[$k]}"
			WALL[$k]+="$M_WALL " RSS[$k]+="$M_RSS " CPU[$k]+="$M_CPU "
		done
	done
	echo
	echo "== USMT.MIG of $S_mig bytes: $S_records records, $S_inflated bytes inflated; page cache warm; $(nproc) vCPU (shared); $RUNS alternating runs, medians"
	echo "per-run wall s: usmtkit ${WALL[usmtkit]}| pigz ${WALL[pigz]}| zlib-flate ${WALL[zlibflate]}"
	echo "per-run cpu s:  usmtkit ${CPU[usmtkit]}| pigz ${CPU[pigz]}| zlib-flate ${CPU[zlibflate]}"
	for k in "${keys[@]}"; do WALL[$k]=$(median "${WALL[$k]}") RSS[$k]=$(median "${RSS[$k]}") CPU[$k]=$(median "${CPU[$k]}"); done
	printf '%-28s %9s %9s %10s %11s %9s %9s\n' tool "wall s" "cpu s" "MiB/s out" "peak RSS" "wall/u" "cpu/u"
	for k in "${keys[@]}"; do
		label=$k
		[ "$k" = usmtkit ] && label="usmtkit verify"
		[ "$k" = pigz ] && label="pigz -d -z -p 1"
		[ "$k" = zlibflate ] && label="zlib-flate -uncompress"
		awk -v l="$label" -v w="${WALL[$k]}" -v c="${CPU[$k]}" -v r="${RSS[$k]}" -v b="$S_inflated" -v uw="${WALL[usmtkit]}" -v uc="${CPU[usmtkit]}" 'BEGIN {
			printf "%-28s %9.2f %9.2f %10.0f %7.1f MiB %9.2f %9.2f\n", l, w, c, (w > 0 ? b / 1048576 / w : 0), r / 1024, (uw > 0 ? w / uw : 0), (uc > 0 ? c / uc : 0) }'
	done
	awk -v u="${WALL[usmtkit]}" -v p="${WALL[pigz]}" -v uc="${CPU[usmtkit]}" -v pc="${CPU[pigz]}" -v r="${RSS[usmtkit]}" 'BEGIN {
		printf "goal: usmtkit verify at least as fast as pigz -d -z -p 1 (pigz/usmtkit wall %.2f, cpu %.2f; want >= 1.00): %s; peak RSS %.1f MiB (want < 64): %s\n",
			p / u, pc / uc, (p >= u ? "met" : "NOT MET"), r / 1024, (r < 65536 ? "met" : "NOT MET") }'
done
