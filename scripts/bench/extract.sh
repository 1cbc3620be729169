#!/usr/bin/env bash
# Benchmark: usmtkit extract against the usual tools, side by side, on the
# same generated profile data.
#
#   scripts/bench/extract.sh [SIZE]        SIZE like 256M, 1G (default 1G)
#
# Builds one profile store (go run ./fixtures/cmd/mkstore -kind profile), a
# usmtkit archive of it, and a squashfs image of the same tree, then times:
#   usmtkit extract ARCHIVE   vs  zstd -dc ARCHIVE | tar -x   vs  unsquashfs
#   usmtkit extract DIRSTORE  vs  cp -a
# Every run writes to a fresh folder on the same file system; the page cache
# is warm (the inputs were just written), as on a second run in the field.
# usmtkit makes every file durable before it gets its real name (one syncfs
# per batch, in the background while the next batch is written, with
# writeback started as each file is written); cp, tar and unsquashfs do not
# sync at all, so the usmtkit numbers include flushing the data to disk and
# the others do not (the "; sync" rows do the same flushing).
# The machine this was tuned on is a noisy 2-vCPU VM: run it several times
# and compare medians. USMTKIT_CPUPROFILE=FILE makes usmtkit write a CPU
# profile of its run (go tool pprof -top BINARY FILE).
# Goal: extract from an archive no slower than zstd -dc | tar -x.
# Set BENCH_DIR to keep the data somewhere else than a temp folder;
# KEEP=1 keeps it afterwards, and a later run with the same BENCH_DIR
# reuses it (the archive is rebuilt). RUNS (default 3) rounds alternate
# the tools; the table shows medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/sbin:/usr/sbin"
SIZE=${1:-1G}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/usmtkit-bench-extract.XXXXXX)}
mkdir -p "$WORK"
helper=scripts/bench/.extract-mkarchive-$$
cleanup() {
  rm -rf "$helper"
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

for t in zstd tar mksquashfs unsquashfs; do
  command -v "$t" >/dev/null || { echo "$t is not installed (apt-get install zstd tar squashfs-tools)" >&2; exit 1; }
done

echo "== building usmtkit and $SIZE of profile data in $WORK"
go build -o "$WORK/usmtkit" ./cmd/usmtkit
STORE=$WORK/data/store
ARCHIVE=$WORK/store.tar.zst
SQFS=$WORK/store.sqfs
go build -o "$WORK/mkstore" ./fixtures/cmd/mkstore
. scripts/bench/lib.sh
# The store (rebuilt when an older fixtures.Profile made it), and the
# squashfs image of it unless it is newer than the store.
profile_store "$WORK/data" "$WORK/mkstore" -size "$SIZE"
rm -f "$ARCHIVE" # rebuilt by this build's compress
if [ "$SQFS" -nt "$WORK/data/profile-generation" ]; then
  echo "(reusing the data in $WORK; remove it to generate new data)"
else
  mksquashfs "$STORE" "$SQFS" -comp zstd -noappend -quiet >/dev/null
fi

# The archive: with usmtkit compress when the CLI has it, else through the
# compress package directly (a throw-away main package, removed on exit).
if "$WORK/usmtkit" compress --help >/dev/null 2>&1; then
  "$WORK/usmtkit" -q compress "$STORE" -o "$ARCHIVE"
else
  mkdir -p "$helper"
  cat >"$helper/main.go" <<'GO'
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

func main() {
	s, err := store.Open(os.Args[1])
	if err == nil {
		_, err = compress.CreateFile(context.Background(), os.Args[2], s, compress.WriteOptions{}, false)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
GO
  go run "./$helper" "$STORE" "$ARCHIVE"
fi

bytes=$(du -sb --apparent-size "$STORE" | cut -f1)
files=$(find "$STORE" -type f | wc -l)
echo "data: $files files, $((bytes / 1048576)) MiB; archive $(( $(stat -c %s "$ARCHIVE") / 1048576 )) MiB, squashfs $(( $(stat -c %s "$SQFS") / 1048576 )) MiB; $(nproc) CPUs"
echo

RUNS=${RUNS:-3}
declare -A times
order=()
bench() { # label, command...: one more timing of label
  local label=$1; shift
  local out=$WORK/out
  rm -rf "$out"; mkdir -p "$out"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  OUT=$out "$@"
  t1=$(date +%s.%N)
  [ -n "${times[$label]:-}" ] || order+=("$label")
  times[$label]+="$(echo "$t1 - $t0" | bc -l) "
  # Same files out as in: count them.
  local got
  got=$(find "$out" -type f | wc -l)
  [ "$got" -ge "$((files - 3))" ] || { echo "  ($label wrote $got files, want about $files)" >&2; exit 1; }
  rm -rf "$out"
}
# median LIST: the median of whitespace-separated numbers.
median() {
  tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ex_archive()       { "$WORK/usmtkit" -q extract "$ARCHIVE" "$OUT/x" --layout store >/dev/null; }
ex_archive_win()   { "$WORK/usmtkit" -q extract "$ARCHIVE" "$OUT/x" >/dev/null; }
zstd_tar()         { zstd -dc -q "$ARCHIVE" | tar --warning=no-unknown-keyword -x -C "$OUT"; }
# usmtkit makes every file durable before it takes its real name; these
# rows do the same amount of flushing, for a like-for-like comparison.
zstd_tar_sync()    { zstd_tar && sync -f "$OUT"; }
cp_a_sync()        { cp -a "$STORE" "$OUT/x" && sync -f "$OUT"; }
unsq()             { unsquashfs -q -n -d "$OUT/x" "$SQFS" >/dev/null; }
ex_dir()           { "$WORK/usmtkit" -q extract "$STORE" "$OUT/x" --layout store >/dev/null; }
cp_a()             { cp -a "$STORE" "$OUT/x"; }

echo "$RUNS rounds, the tools in alternation; medians (per-run seconds in brackets)"
for ((r = 1; r <= RUNS; r++)); do
  bench "usmtkit extract ARCHIVE (--layout store)" ex_archive
  bench "usmtkit extract ARCHIVE (windows layout)" ex_archive_win
  bench "zstd -dc ARCHIVE | tar -x" zstd_tar
  bench "zstd -dc ARCHIVE | tar -x; sync" zstd_tar_sync
  bench "unsquashfs (zstd squashfs of the same tree)" unsq
  bench "usmtkit extract DIRSTORE (--layout store)" ex_dir
  bench "cp -a DIRSTORE" cp_a
  bench "cp -a DIRSTORE; sync" cp_a_sync
done
declare -A med
for label in "${order[@]}"; do
  med[$label]=$(median "${times[$label]}")
  [ "$label" = "usmtkit extract DIRSTORE (--layout store)" ] && echo "== from the directory store"
  [ "$label" = "usmtkit extract ARCHIVE (--layout store)" ] && echo "== from the archive"
  printf '%-48s %7.2f s  %8.1f MiB/s  [%s]\n' "$label" "${med[$label]}" "$(echo "$bytes / 1048576 / ${med[$label]}" | bc -l)" "${times[$label]% }"
done
echo
u=${med["usmtkit extract ARCHIVE (--layout store)"]}
uw=${med["usmtkit extract ARCHIVE (windows layout)"]}
z=${med["zstd -dc ARCHIVE | tar -x"]}
zs=${med["zstd -dc ARCHIVE | tar -x; sync"]}
printf 'usmtkit extract ARCHIVE / zstd|tar = %.2f store layout, %.2f windows layout (goal: <= 1.00); / (zstd|tar; sync) = %.2f\n' \
  "$(echo "$u / $z" | bc -l)" "$(echo "$uw / $z" | bc -l)" "$(echo "$u / $zs" | bc -l)"
# The machine drifts during a series (this VM's disk slows down as the runs
# write gigabytes), so the ratio of the runs made side by side in each
# round is steadier than the ratio of the medians.
pair_ratios() { # LABEL_A LABEL_B: the median of the per-round ratios
  local -a a b
  read -r -a a <<<"${times[$1]}"
  read -r -a b <<<"${times[$2]}"
  local r=""
  for ((k = 0; k < ${#a[@]}; k++)); do r+="$(echo "${a[$k]} / ${b[$k]}" | bc -l) "; done
  median "$r"
}
printf 'per-round ratios, median: store layout / zstd|tar = %.2f, windows layout / zstd|tar = %.2f\n' \
  "$(pair_ratios "usmtkit extract ARCHIVE (--layout store)" "zstd -dc ARCHIVE | tar -x")" \
  "$(pair_ratios "usmtkit extract ARCHIVE (windows layout)" "zstd -dc ARCHIVE | tar -x")"
