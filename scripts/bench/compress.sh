#!/usr/bin/env bash
# Benchmark `usmtkit compress` against `tar -cf - | zstd -3 -T0` and
# `mksquashfs -comp zstd` on the same generated profile store: wall time,
# CPU time, peak RSS and output size, each also as a ratio to usmtkit.
# Then the TOC load time and memory of a one-million-entry archive.
# Page cache warm (every tool runs after a warming pass).
#
#   scripts/bench/compress.sh            # 2G profile store
#   scripts/bench/compress.sh 300M
#
# Environment: WORK (scratch folder, default /tmp/usmtkit-bench-compress;
# kept between runs so the store is generated once), LEVEL, CHUNK, THREADS
# (passed to usmtkit compress as --level/--chunk-size/--threads when set),
# RUNS (default 3: the tools run in alternation RUNS times and the table
# shows the median of each column; this VM is noisy), SQUASHFS=0 (skip
# mksquashfs, which takes ~30x longer), TOC=0 (skip the TOC load test),
# GO_ENCODER=0 (skip the row of usmtkit's pure-Go encoder, which builds
# without cgo use), BASELINE (another usmtkit binary, e.g. an older build, measured in the
# same alternation for an A/B comparison),
# MANY (if set, e.g. MANY=1000000, also build a real store of that many
# files, compress it and time loading its TOC; slow to generate).
set -euo pipefail

SIZE=${1:-2G}
WORK=${WORK:-/tmp/usmtkit-bench-compress}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for t in tar zstd mksquashfs /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "compress.sh: $t is not installed (apt-get install tar zstd squashfs-tools time)" >&2; exit 1; }
done
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore &&
	go build -o "$WORK/bin/benchtool" ./compress/internal/benchtool)
U="$WORK/bin/usmtkit"

# The CLI command is `usmtkit compress STORE -o OUT`; until a build has it,
# the package's bench tool runs the same code path (compress.CreateFile).
flags=()
[ -n "${LEVEL:-}" ] && flags+=(--level "$LEVEL")
[ -n "${CHUNK:-}" ] && flags+=(--chunk-size "$CHUNK")
[ -n "${THREADS:-}" ] && flags+=(--threads "$THREADS")
bflags=()
[ -n "${LEVEL:-}" ] && bflags+=(-level "$LEVEL")
[ -n "${CHUNK:-}" ] && bflags+=(-chunk-size "$CHUNK")
[ -n "${THREADS:-}" ] && bflags+=(-threads "$THREADS")
WHO="usmtkit (compress pkg)"
if "$U" compress --help >/dev/null 2>&1; then
	WHO="usmtkit compress"
fi

prof="$WORK/profile-$SIZE"
. "$ROOT/scripts/bench/lib.sh"
profile_store "$prof" "$WORK/bin/mkstore" -size "$SIZE"
store="$prof/store"
bytes=$(find "$store" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
nfiles=$(find "$store" -type f | wc -l)
find "$store" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache
out="$WORK/out"
mkdir -p "$out"

# measure LABEL OUTFILE CMD...: runs CMD under /usr/bin/time; sets
# M_WALL M_CPU M_RSS M_SIZE.
measure() {
	local label=$1 file=$2
	shift 2
	rm -rf "$file"
	sync
	local tf
	tf=$(mktemp)
	if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" bash -c "$*" >/dev/null 2>>"$WORK/stderr.log"; then
		echo "compress.sh: $label failed; see $WORK/stderr.log" >&2
	fi
	read -r M_WALL u s M_RSS <"$tf"
	rm -f "$tf"
	M_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
	M_SIZE=$(stat -c %s "$file" 2>/dev/null || echo 0)
}

RUNS=${RUNS:-3}
declare -A WALL CPU RSS OSIZE
# run_tool KEY FILE CMD...: one more measurement of KEY.
run_tool() {
	local key=$1 file=$2
	shift 2
	measure "$key" "$file" "$@"
	WALL[$key]+="$M_WALL " CPU[$key]+="$M_CPU " RSS[$key]+="$M_RSS " OSIZE[$key]+="$M_SIZE "
}
# median LIST: the median of whitespace-separated numbers.
median() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "== profile store: $nfiles files, $bytes bytes ($store), page cache warm, $(nproc) vCPU, $RUNS alternating runs, medians"
keys=(usmtkit tarzstd tarzstdsync)
[ -n "${BASELINE:-}" ] && keys=(usmtkit baseline tarzstd tarzstdsync)
# The pure-Go encoder (what a build without a C compiler uses), when this
# build has the choice.
GOENC=0
if [ "$WHO" = "usmtkit compress" ] && [ "${GO_ENCODER:-1}" != 0 ] && "$U" compress --help 2>&1 | grep -q -- --encoder; then
	GOENC=1
	keys+=(usmtgo)
fi
for ((run = 1; run <= RUNS; run++)); do
	if [ "$WHO" = "usmtkit compress" ]; then
		run_tool usmtkit "$out/u.tar.zst" "\"$U\" compress ${flags[*]:-} \"$store\" -o \"$out/u.tar.zst\""
	else
		run_tool usmtkit "$out/u.tar.zst" "\"$WORK/bin/benchtool\" compress ${bflags[*]:-} -o \"$out/u.tar.zst\" \"$store\""
	fi
	if [ -n "${BASELINE:-}" ]; then
		run_tool baseline "$out/b.tar.zst" "\"$BASELINE\" compress ${flags[*]:-} \"$store\" -o \"$out/b.tar.zst\""
	fi
	if [ "$GOENC" = 1 ]; then
		run_tool usmtgo "$out/g.tar.zst" "\"$U\" compress --encoder go ${flags[*]:-} \"$store\" -o \"$out/g.tar.zst\""
	fi
	run_tool tarzstd "$out/t.tar.zst" "tar -C \"$store\" -cf - . | zstd -3 -T0 -q -o \"$out/t.tar.zst\""
	# usmtkit fsyncs before writing its footer (crash safety); this row gives
	# tar | zstd the same durability for a like-for-like wall time.
	run_tool tarzstdsync "$out/t2.tar.zst" "tar -C \"$store\" -cf - . | zstd -3 -T0 -q -o \"$out/t2.tar.zst\" && sync"
done
if [ "${SQUASHFS:-1}" != 0 ]; then
	run_tool squashfs "$out/s.sqfs" "mksquashfs \"$store\" \"$out/s.sqfs\" -comp zstd -noappend -quiet -no-progress"
	keys+=(squashfs)
fi
echo "per-run wall s: usmtkit ${WALL[usmtkit]}| baseline ${WALL[baseline]:-}| tar|zstd ${WALL[tarzstd]}| tar|zstd;sync ${WALL[tarzstdsync]}"
for k in "${keys[@]}"; do
	WALL[$k]=$(median "${WALL[$k]}") CPU[$k]=$(median "${CPU[$k]}") RSS[$k]=$(median "${RSS[$k]}") OSIZE[$k]=$(median "${OSIZE[$k]}")
done

printf '%-24s %9s %9s %11s %14s %7s %7s %7s %7s\n' tool "wall s" "cpu s" "RSS KiB" "size B" "wall/u" "cpu/u" "rss/u" "size/u"
for k in "${keys[@]}"; do
	label=$k
	[ "$k" = usmtkit ] && label=$WHO
	[ "$k" = tarzstd ] && label="tar | zstd -3 -T0"
	[ "$k" = baseline ] && label="baseline (BASELINE)"
	[ "$k" = usmtgo ] && label="usmtkit --encoder go"
	[ "$k" = tarzstdsync ] && label="tar | zstd -3 -T0; sync"
	[ "$k" = squashfs ] && label="mksquashfs -comp zstd"
	awk -v l="$label" -v w="${WALL[$k]}" -v c="${CPU[$k]}" -v r="${RSS[$k]}" -v s="${OSIZE[$k]}" \
		-v uw="${WALL[usmtkit]}" -v uc="${CPU[usmtkit]}" -v ur="${RSS[usmtkit]}" -v us="${OSIZE[usmtkit]}" 'BEGIN {
		printf "%-24s %9.2f %9.2f %11d %14d %7.2f %7.2f %7.2f %7.3f\n", l, w, c, r, s,
			(uw > 0 ? w / uw : 0), (uc > 0 ? c / uc : 0), (ur > 0 ? r / ur : 0), (us > 0 ? s / us : 0) }'
done
echo "(ratios are tool / usmtkit: for usmtkit to meet its goal, tar|zstd wall/u >= 0.91 and size/u >= 0.97;"
echo " this VM is noisy: repeat runs and compare medians before drawing conclusions)"

[ "${TOC:-1}" = 0 ] && [ -z "${MANY:-}" ] && exit 0
echo
echo "== TOC load of a one-million-entry archive (synthetic TOC, compress.TestMillionEntryTOC)"
(cd "$ROOT" && go test ./compress -run '^TestMillionEntryTOC$' -count 1 -v | grep -E 'TOC load|walk of')

if [ -n "${MANY:-}" ]; then
	many="$WORK/many-$MANY"
	if [ ! -d "$many/store" ]; then
		echo "generating $MANY entries in $many ..." >&2
		"$WORK/bin/mkstore" -kind many -files "$MANY" -out "$many" >/dev/null
	fi
	echo
	echo "== real store of $MANY files"
	run_tool many "$out/many.tar.zst" "\"$WORK/bin/benchtool\" compress -o \"$out/many.tar.zst\" \"$many/store\""
	echo "compress: ${WALL[many]} s wall, ${RSS[many]} KiB peak RSS, ${OSIZE[many]} bytes"
	read -r secs heap n < <("$WORK/bin/benchtool" tocload "$out/many.tar.zst")
	echo "TOC load: $n entries in $secs s, retained heap $((heap / 1000000)) MB"
fi
