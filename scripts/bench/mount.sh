#!/usr/bin/env bash
# Benchmark `usmtkit mount` against squashfuse (squashfs image, zstd) and
# archivemount (tar.zst) on one generated profile store, and a directory
# store mounted by usmtkit (passthrough and not) against reading the
# folder directly. Every phase runs on a fresh mount of the same files:
#
#   stat      find over every entry (find -printf), seconds
#   files     300 random whole-file reads, p50/p99 latency
#   4k        2000 random 4 KiB reads inside files >= 1 MiB, p50/p99 latency
#   seq       every file read once, MB/s
#   rss       peak RSS of the server over the phases (VmHWM), MiB
#
# and then the ratios of the usmtkit rows to their anchors (squashfuse,
# archivemount, the folder read directly) with the goals of the mount issue.
#
#   scripts/bench/mount.sh                 # 200 MB and 2 GB profile stores
#   SIZE=200M scripts/bench/mount.sh       # one size
#
# Every row runs RUNS times (default 3) and the ratios are of the medians,
# so that a tail growing with the store shows up between the sizes.
#
# Environment: SIZES (store sizes, default "200M 2G"), SIZE (one size
# instead), RUNS (default 3), WORK (scratch folder, default
# /tmp/usmtkit-bench-mount, kept so stores are generated once), TIMEOUT
# (seconds per phase, default 300; a phase that runs longer shows
# "timeout"), ROWS (rows to run, default all: usmtkit-archive
# usmtkit-archive-128k squashfuse archivemount direct usmtkit-dir
# usmtkit-dir-nopt; only the images and archives the rows need are made),
# BUILD (0: reuse the binaries already in $WORK/bin
# and the usmtkit archives made by the last run instead of building
# them), MOUNT_OPTS
# (more options for `usmtkit mount`, e.g. "--cache-size 16"), BEFORE (the
# path of another usmtkit binary, e.g. the build before a change: adds the
# row usmtkit-archive-before, which mounts the same archive with it, run
# right after usmtkit-archive in every run so both see the same load, and
# the ratios of the two; with the row usmtkit-dir it also adds
# usmtkit-dir-before, the folder mounted by it, run right after
# usmtkit-dir). The folder rows (direct, usmtkit-dir, usmtkit-dir-before)
# also print a second line, "walking": the whole tree read by
# `tar -cf - . | cat`, which walks the folders as it reads (readdirplus
# answers the names, so no file costs a LOOKUP), where the "read
# everything" column opens every file by its path. Needs root or fusermount3, plus squashfuse, archivemount,
# mksquashfs, zstd and tar. A store made by an older fixtures.Profile is
# generated again (scripts/bench/lib.sh). The page cache is warm for the
# backing files (read once before the phases); the FUSE caches are cold on
# each mount.
set -euo pipefail

WORK=${WORK:-/tmp/usmtkit-bench-mount}
TIMEOUT=${TIMEOUT:-300}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# The size sweep: the script runs itself once per size (the binaries are
# built by the first run only).
if [ -z "${SIZE:-}" ]; then
	build=${BUILD:-1}
	for s in ${SIZES:-200M 2G}; do
		echo "=== store size $s (load: $(uptime | sed 's/.*load average: //'))"
		SIZE=$s BUILD=$build BUILD_ARCHIVES=${BUILD:-1} "$0"
		build=0
	done
	exit 0
fi

for t in squashfuse archivemount mksquashfs zstd tar find; do
	command -v "$t" >/dev/null || { echo "mount.sh: $t is not installed (apt-get install squashfuse archivemount squashfs-tools zstd)" >&2; exit 1; }
done
mkdir -p "$WORK/bin" "$WORK/mnt"
# usmtkit is built to a scratch name and copied: a mapped file as the Go
# linker writes it was 3.3 MiB more resident (RssFile 16.2 against 12.9
# MiB, same program) than the same bytes written by cp, as an installed
# binary is, which put 3 MiB of noise into the peak RSS column.
[ "${BUILD:-1}" = 0 ] || (cd "$ROOT" && go build -o "$WORK/bin/usmtkit.build" ./cmd/usmtkit && cp "$WORK/bin/usmtkit.build" "$WORK/bin/usmtkit.new" &&
	mv "$WORK/bin/usmtkit.new" "$WORK/bin/usmtkit" && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore &&
	go build -o "$WORK/bin/randread" ./scripts/bench/randread)
U="$WORK/bin/usmtkit"
R="$WORK/bin/randread"
MNT="$WORK/mnt"

# Leftovers of an interrupted run.
if grep -q " $MNT " /proc/self/mountinfo; then fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"; fi

data="$WORK/profile-$SIZE"
. "$ROOT/scripts/bench/lib.sh"
profile_store "$data" "$WORK/bin/mkstore" -size "$SIZE"
STORE="$data/store"

ROWS=${ROWS:-usmtkit-archive usmtkit-archive-128k squashfuse archivemount direct usmtkit-dir usmtkit-dir-nopt}
if [ -n "${BEFORE:-}" ]; then
	[ -x "$BEFORE" ] || { echo "mount.sh: BEFORE=$BEFORE is not an executable" >&2; exit 1; }
	case " $ROWS " in *" usmtkit-archive "*) case " $ROWS " in *" usmtkit-archive-before "*) ;; *) ROWS="$ROWS usmtkit-archive-before" ;; esac ;; esac
	case " $ROWS " in *" usmtkit-dir "*) case " $ROWS " in *" usmtkit-dir-before "*) ;; *) ROWS="$ROWS usmtkit-dir-before" ;; esac ;; esac
fi
# has_row ROW...: one of the rows is to be run (images are made only for those).
has_row() { local r; for r in "$@"; do case " $ROWS " in *" $r "*) return 0 ;; esac; done; return 1; }

arch="$data/store.usmtkit.tar.zst"
# The usmtkit archives are written by the usmtkit under test (its format
# and defaults may have changed since the last run), unless BUILD=0.
[ "${BUILD_ARCHIVES:-${BUILD:-1}}" = 0 ] || rm -f "$arch" "$data/store.usmtkit-128k.tar.zst"
if [ ! -f "$arch" ] && has_row usmtkit-archive usmtkit-archive-before; then
	if "$U" compress --help >/dev/null 2>&1; then
		echo "usmtkit compress $STORE -o $arch" >&2
		"$U" compress "$STORE" -o "$arch" >&2
	else
		echo "NOTE: this usmtkit has no compress command yet; writing the archive with compress.CreateFile (randread -mkarchive)" >&2
		"$R" -mkarchive "$STORE" -out "$arch"
	fi
fi
# The same store in 128 KiB chunks: compares like for like with squashfs's
# 128 KiB blocks (a first read into a chunk decodes at most one chunk).
arch128="$data/store.usmtkit-128k.tar.zst"
case " ${ROWS:-usmtkit-archive-128k} " in *" usmtkit-archive-128k "*)
	if [ ! -f "$arch128" ]; then
		echo "usmtkit compress --chunk-size 128KiB $STORE -o $arch128" >&2
		"$U" compress --chunk-size 128KiB "$STORE" -o "$arch128" >&2
	fi ;;
esac
sqfs="$data/store.sqfs"
[ -f "$sqfs" ] || ! has_row squashfuse || mksquashfs "$STORE" "$sqfs" -comp zstd -quiet -no-progress >/dev/null
tzst="$data/store.tar.zst"
[ -f "$tzst" ] || ! has_row archivemount || tar -C "$STORE" -cf - . | zstd -q -T0 -3 -o "$tzst"
# Warm the page cache for every backing file: usmtkit writes its archives
# with O_DIRECT, which leaves them out of the page cache, and a cold
# archive made every first read of a frame a disk read (random 4 KiB p99
# 2.2 ms instead of 1.1 ms) while squashfs's image was warm.
for f in "$arch" "$arch128" "$sqfs" "$tzst"; do [ -f "$f" ] && cat "$f" >/dev/null; done
find "$STORE" -type f -exec cat {} + >/dev/null

# Server control: start_NAME starts a server on $MNT and sets PID.
PID=""
wait_mounted() {
	for _ in $(seq 1 600); do
		grep -q " $MNT " /proc/self/mountinfo && return 0
		kill -0 "$PID" 2>/dev/null || { echo "mount.sh: server exited" >&2; return 1; }
		sleep 0.1
	done
	echo "mount.sh: $MNT not mounted after 60 s" >&2; return 1
}
start_server() { # KIND PHASE
	local st=""
	[ -z "${STATS:-}" ] || { mkdir -p "$STATS"; st="--stats $STATS/$1-$2.json"; }
	case $1 in
	usmtkit-archive) "$U" -q mount --view store ${MOUNT_OPTS:-} $st "$arch" "$MNT" & PID=$! ;;
	usmtkit-archive-before) "$BEFORE" -q mount --view store ${MOUNT_OPTS:-} $st "$arch" "$MNT" & PID=$! ;;
	usmtkit-archive-128k) "$U" -q mount --view store ${MOUNT_OPTS:-} $st "$arch128" "$MNT" & PID=$! ;;
	usmtkit-dir)     "$U" -q mount --view store $st "$STORE" "$MNT" & PID=$! ;;
	usmtkit-dir-before) "$BEFORE" -q mount --view store $st "$STORE" "$MNT" & PID=$! ;;
	usmtkit-dir-nopt) "$U" -q mount --view store --no-passthrough $st "$STORE" "$MNT" & PID=$! ;;
	squashfuse)      squashfuse -f "$sqfs" "$MNT" & PID=$! ;;
	archivemount)    archivemount -f -o ro,readonly "$tzst" "$MNT" 2>/dev/null & PID=$! ;;
	esac
	wait_mounted
}
stop_server() {
	[ -n "$PID" ] || return 0
	fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=""
}
trap stop_server EXIT

# Phases run in subshells: the peak RSS goes through a file.
HWMF="$WORK/hwm"
note_rss() {
	[ -n "$PID" ] || return 0
	local kb old
	kb=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
	old=$(cat "$HWMF" 2>/dev/null || echo 0)
	[ "${kb:-0}" -gt "${old:-0}" ] && echo "$kb" >"$HWMF"
	return 0
}

# phase KIND NAME: runs one phase on a fresh mount (or the folder for
# "direct") and prints its result.
phase() {
	local kind=$1 name=$2 dir=$MNT res
	if [ "$kind" = direct ]; then dir=$STORE; else start_server "$kind" "$name"; fi
	local t0=$(date +%s%N)
	case $name in
	stat)  res=$(timeout "$TIMEOUT" find "$dir" -printf '%s %i\n' | wc -l) && res="$(( ($(date +%s%N) - t0) / 1000000 )) ms ($res entries)" || res=timeout ;;
	files) res=$(timeout "$TIMEOUT" "$R" -root "$dir" -list-root "$STORE" -mode files -n 300) || res=timeout ;;
	4k)    res=$(timeout "$TIMEOUT" "$R" -root "$dir" -list-root "$STORE" -mode 4k -n 2000) || res=timeout ;;
	seq)   res=$(timeout "$TIMEOUT" "$R" -root "$dir" -list-root "$STORE" -mode seq) || res=timeout ;;
	walk)  # GNU tar skips reading the files when the archive is /dev/null: pipe it.
		if timeout "$TIMEOUT" tar -C "$dir" -cf - . | cat >/dev/null; then
			res="MB/s=$(awk -v b="$STORE_BYTES" -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.0f", b / 1e6 / (ns / 1e9)}') seconds=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.2f", ns / 1e9}')"
		else res=timeout; fi ;;
	esac
	note_rss
	[ "$kind" = direct ] || stop_server
	echo "$res"
}

rm -f "$WORK"/row-* "$WORK"/walk-*
STORE_BYTES=$(find "$STORE" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
run() { # KIND LABEL
	case " $ROWS " in *" $1 "*) ;; *) return 0 ;; esac
	echo 0 >"$HWMF"
	local st fl fk sq
	st=$(phase "$1" stat); fl=$(phase "$1" files); fk=$(phase "$1" 4k); sq=$(phase "$1" seq)
	local rss="-"
	[ "$1" = direct ] || rss="$(( $(cat "$HWMF") / 1024 )) MiB"
	printf '%-34s | %-26s | %-30s | %-30s | %-26s | %s\n' "$2" "$st" "$fl" "${fk% files=*}" "${sq% bytes=*}" "$rss"
	# Numbers for the ratios: stat ms, files p50 p99, 4k p50 p99 (µs), MB/s, RSS MiB.
	printf '%s %s %s %s %s %s\n' "$(num ms "$st")" "$(pct p50 "$fl") $(pct p99 "$fl")" "$(pct p50 "$fk") $(pct p99 "$fk")" \
		"$(num MB/s "$sq")" "$(num MiB "$rss")" >>"$WORK/row-$1"
	case $1 in direct | usmtkit-dir | usmtkit-dir-before)
		local wk
		wk=$(phase "$1" walk)
		printf '%-34s | %-26s | %-30s | %-30s | %-26s |\n' "$2, walking (tar)" "" "" "" "${wk}"
		echo "$(num MB/s "$wk")" >>"$WORK/walk-$1" ;;
	esac
}

# num UNIT TEXT: the number before " ms" / " MiB" or after "MB/s=" in TEXT, or "-".
num() {
	case $1 in
	MB/s) sed -n 's/.*MB\/s=\([0-9.]*\).*/\1/p' <<<"$2" | grep . || echo - ;;
	*) sed -n "s/^\([0-9.]*\) $1.*/\1/p" <<<"$2" | grep . || echo - ;;
	esac
}
# pct p50|p99 TEXT: that percentile of a randread line in µs, or "-".
pct() {
	local v
	v=$(sed -n "s/.*$1=\([0-9.]*[µnm]*s\).*/\1/p" <<<"$2")
	case $v in
	*µs) echo "${v%µs}" ;;
	*ns) awk -v x="${v%ns}" 'BEGIN {print x / 1000}' ;;
	*ms) awk -v x="${v%ms}" 'BEGIN {print x * 1000}' ;;
	*s) awk -v x="${v%s}" 'BEGIN {print x * 1000000}' ;;
	*) echo - ;;
	esac
}
# median ROW: the median of each column over ROW's runs ("-" stays "-").
median() {
	awk '{ for (i = 1; i <= NF; i++) v[i, NR] = $i; nf = NF }
	END { for (i = 1; i <= nf; i++) { n = 0
		for (r = 1; r <= NR; r++) if (v[i, r] != "-") a[++n] = v[i, r] + 0
		for (x = 2; x <= n; x++) for (y = x; y > 1 && a[y - 1] > a[y]; y--) { t = a[y]; a[y] = a[y - 1]; a[y - 1] = t }
		printf "%s%s", (n ? a[int((n + 1) / 2)] : "-"), (i < nf ? " " : "\n") } }' "$WORK/row-$1"
}
# ratios ROW BASE LABEL: ROW's medians over BASE's (time and memory: below 1
# is better for ROW; MB/s: above 1 is better).
ratios() {
	[ -f "$WORK/row-$1" ] && [ -f "$WORK/row-$2" ] || return 0
	paste -d' ' <(median "$1") <(median "$2") | awk -v label="$3" '
	function r(a, b) { return (a == "-" || b == "-" || b == 0) ? "-" : sprintf("%.2f", a / b) }
	{ printf "%-44s | stat %s | files p50 %s p99 %s | 4k p50 %s p99 %s | read everything %s | RSS %s\n",
		label, r($1, $8), r($2, $9), r($3, $10), r($4, $11), r($5, $12), r($6, $13), r($7, $14) }'
}

# walk_ratio ROW BASE LABEL: the walking read's MB/s, ROW's median over BASE's.
walk_ratio() {
	[ -f "$WORK/walk-$1" ] && [ -f "$WORK/walk-$2" ] || return 0
	printf '%-44s | read everything %s (%s against %s MB/s)\n' "$3" \
		"$(awk -v a="$(median_of $(cat "$WORK/walk-$1"))" -v b="$(median_of $(cat "$WORK/walk-$2"))" 'BEGIN {printf "%.2f", a / b}')" \
		"$(median_of $(cat "$WORK/walk-$1"))" "$(median_of $(cat "$WORK/walk-$2"))"
}

echo
echo "store: $STORE ($(du -sh "$STORE" | cut -f1), $(find "$STORE" -type f | wc -l) files)"
size_of() { if [ -f "$1" ]; then du -h "$1" | cut -f1; else echo "-"; fi; }
echo "archive $(size_of "$arch") ($(size_of "$arch128") in 128 KiB chunks), squashfs $(size_of "$sqfs"), tar.zst $(size_of "$tzst"); $(uname -r), $(nproc) CPUs, uid $(id -u)"
printf '%-34s | %-26s | %-30s | %-30s | %-26s | %s\n' "" "stat every entry" "300 whole-file reads" "2000 random 4 KiB reads" "read everything" "peak RSS"
for r in $(seq "$RUNS"); do
	echo "-- run $r of $RUNS (load: $(uptime | sed 's/.*load average: //'))"
	run usmtkit-archive "usmtkit (archive)"
	run usmtkit-archive-before "usmtkit before (archive)"
	run usmtkit-archive-128k "usmtkit (archive, 128 KiB chunks)"
	run squashfuse "squashfuse (sqfs zstd)"
	run archivemount "archivemount (tar.zst)"
	run direct "folder, no FUSE"
	run usmtkit-dir "usmtkit (folder)"
	run usmtkit-dir-before "usmtkit before (folder)"
	run usmtkit-dir-nopt "usmtkit --no-passthrough"
done
echo
echo "store $SIZE: ratios of the medians of $RUNS runs (time and memory: below 1.00 means faster or smaller than the anchor; read everything: above 1.00 means faster)"
ratios usmtkit-archive squashfuse "usmtkit (archive) / squashfuse"
ratios usmtkit-archive-before squashfuse "usmtkit before (archive) / squashfuse"
ratios usmtkit-archive usmtkit-archive-before "usmtkit (archive) / before"
ratios usmtkit-archive-128k squashfuse "usmtkit (archive, 128 KiB) / squashfuse"
ratios usmtkit-archive archivemount "usmtkit (archive) / archivemount"
ratios usmtkit-dir direct "usmtkit (folder) / folder"
ratios usmtkit-dir-before direct "usmtkit before (folder) / folder"
ratios usmtkit-dir usmtkit-dir-before "usmtkit (folder) / before"
walk_ratio usmtkit-dir direct "usmtkit (folder) / folder, walking (tar)"
walk_ratio usmtkit-dir-before direct "usmtkit before (folder) / folder, walking"
walk_ratio usmtkit-dir usmtkit-dir-before "usmtkit (folder) / before, walking"
echo "goals: every usmtkit-archive ratio to squashfuse <= 1.00 (read everything >= 1.00); folder read everything >= 0.50"
