#!/usr/bin/env bash
# Benchmark `usmtkit hardlinks` against the naive anchor a technician would
# type, on one generated hard-link store with its live tree:
#
#   find STORE LIVE -links +1 -printf '%i %p\n' | sort
#
# The anchor only lists multi-link inodes; usmtkit does more (lstat of every
# live counterpart, one scan of the live tree for moved inodes, content
# hash of same-size copies), so a ratio near or below 1 is the goal.
# Wall time and peak RSS (/usr/bin/time -f '%e %M'), each as a ratio to
# the anchor. The page cache is warm (each command runs once unmeasured).
#
#   scripts/bench/hardlinks.sh [SIZE] [FILES]     default 200M 50000
#
# After generating, the script breaks links as users do: every 100th live
# file is moved to another folder (MOVED), every 97th deleted
# (ONLY-IN-STORE), every 89th saved via a temporary file (STALE).
# Environment: BENCH_DIR (scratch folder; default a new temp folder),
# KEEP=1 keeps it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/sbin:/usr/sbin"
SIZE=${1:-200M}
FILES=${2:-50000}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/usmtkit-bench-hardlinks.XXXXXX)}
mkdir -p "$WORK"
cleanup() { if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT
[ -x /usr/bin/time ] || { echo "hardlinks.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

echo "== building usmtkit and a $SIZE hard-link profile of $FILES files in $WORK"
go build -o "$WORK/usmtkit" ./cmd/usmtkit
go build -o "$WORK/mkstore" ./fixtures/cmd/mkstore
rm -rf "$WORK/data"
STORE=$("$WORK/mkstore" -kind profile -hardlink -size "$SIZE" -files "$FILES" -out "$WORK/data")
LIVE="$WORK/data/live"

echo "== breaking links (moved, deleted, saved via a temporary file)"
mkdir -p "$LIVE/Moved"
find "$LIVE/Users" -type f | sort | awk -v moved="$LIVE/Moved" '
  NR % 100 == 0 { printf "mv\t%s\t%s/%d-moved\n", $0, moved, NR; next }
  NR % 97 == 0  { printf "rm\t%s\n", $0; next }
  NR % 89 == 0  { printf "save\t%s\n", $0 }' |
while IFS=$'\t' read -r op a b; do
  case $op in
    mv) mv "$a" "$b" ;;
    rm) rm "$a" ;;
    save) printf 'saved later\n' >"$a.tmp" && touch -d '2030-01-01' "$a.tmp" && mv "$a.tmp" "$a" ;;
  esac
done

measure() { # label command... ; prints "seconds maxrss_kib"
  "$@" >/dev/null 2>&1 || true # warm the cache
  /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/err.out" || {
    rc=$?
    # usmtkit exits 0; anything else is a failure worth showing
    echo "command failed ($rc): $*" >&2; cat "$WORK/err.out" >&2; exit 1
  }
  tail -1 "$WORK/time.out"
}

echo "== measuring"
read -r ut um < <(measure "$WORK/usmtkit" -q hardlinks "$STORE" --live "C=$LIVE" --json)
read -r ft fm < <(measure sh -c "find '$STORE' '$LIVE' -links +1 -printf '%i %p\n' | sort")
read -r nt nm < <(measure "$WORK/usmtkit" -q hardlinks "$STORE" --json)

summary=$("$WORK/usmtkit" -q hardlinks "$STORE" --live "C=$LIVE" --json | tail -1)
files=$(find "$STORE" -type f | wc -l)
echo
echo "store: $STORE ($files files), live: $LIVE"
echo "classes: $(printf '%s' "$summary" | grep -o '"classes":{[^}]*}[^}]*}[^}]*}[^}]*}[^}]*}[^}]*}' || true)"
printf '%-52s %9s %11s %10s %10s\n' "command" "wall s" "peak RSS" "time x" "RSS x"
row() { awk -v n="$1" -v t="$2" -v m="$3" -v ft="$ft" -v fm="$fm" \
  'BEGIN { printf "%-52s %9.2f %8.1f MiB %10.2f %10.2f\n", n, t, m/1024, (ft > 0 ? t/ft : 0), m/fm }'; }
row "find STORE LIVE -links +1 -printf ... | sort (anchor)" "$ft" "$fm"
row "usmtkit hardlinks --live C=LIVE --json" "$ut" "$um"
row "usmtkit hardlinks --json (no --live)" "$nt" "$nm"
