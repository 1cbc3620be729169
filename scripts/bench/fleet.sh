#!/usr/bin/env bash
# Benchmark `usmtkit verify` over a share copy of many small stores
# (docs/cli.md, "Many stores at once"): one process verifying them --jobs
# at a time, against the shell loop a script would otherwise run (one
# `usmtkit verify` per store, one after the other), and the same run with
# --journal (one fdatasync'd line per store) against it without.
#
#   scripts/bench/fleet.sh            # 200 stores, --jobs 2
#   N=500 JOBS=4 scripts/bench/fleet.sh
#
# Goals (issue 13): the run over the share takes at most 0.6x the loop's
# time; the journal adds under 5 %. Page cache warm; medians of RUNS
# (default 3) runs, the commands alternating. Environment: N (stores), JOBS
# (--jobs), RUNS, WORK (scratch folder, default /tmp/usmtkit-bench-fleet;
# the share is kept between runs and rebuilt when N or the fixture changes).
set -euo pipefail

N=${N:-200}
JOBS=${JOBS:-2}
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/usmtkit-bench-fleet}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

command -v /usr/bin/time >/dev/null || { echo "fleet.sh: /usr/bin/time is not installed (apt-get install time)" >&2; exit 1; }
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore)
U="$WORK/bin/usmtkit"
. "$ROOT/scripts/bench/lib.sh"

# The share: N copies of the USMT4 fixture store (11 user files, ~40 KB,
# catalog.mig and migstate.dat) under one SMPSTORE folder, named like PCs.
share="$WORK/share-$N"
stamp="$share/.made-by"
want="usmt4 x $N $(cd "$ROOT" && git rev-parse HEAD:fixtures 2>/dev/null || echo unknown)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
	rm -rf "$share" "$WORK/one"
	one=$("$WORK/bin/mkstore" -kind usmt4 -out "$WORK/one")
	mkdir -p "$share/SMPSTORE_1A2B3C4D\$"
	for ((i = 0; i < N; i++)); do
		cp -a "$one" "$share/SMPSTORE_1A2B3C4D\$/PC$(printf %04d "$i")"
	done
	echo "$want" >"$stamp"
fi
stores=("$share"/SMPSTORE_1A2B3C4D\$/PC*)
[ "${#stores[@]}" = "$N" ] || { echo "fleet.sh: $share holds ${#stores[@]} stores, not $N" >&2; exit 1; }
find "$share" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache
printf '%s\n' "${stores[@]}" >"$WORK/stores.txt"

journal="$WORK/fleet.journal"
declare -A CMD
NAMES=("verify SHARE --jobs $JOBS" "verify SHARE --jobs $JOBS --journal" "shell loop, one verify per store")
CMD["verify SHARE --jobs $JOBS"]="'$U' -q verify '$share' --jobs $JOBS"
CMD["verify SHARE --jobs $JOBS --journal"]="rm -f '$journal'; '$U' -q verify '$share' --jobs $JOBS --journal '$journal'"
CMD["shell loop, one verify per store"]="while IFS= read -r s; do '$U' -q verify \"\$s\" || exit 1; done <'$WORK/stores.txt'"

# run NAME: wall seconds and CPU seconds (user+sys) of one run.
run() {
	/usr/bin/time -o "$WORK/time" -f '%e %U %S' bash -c "${CMD[$1]}" >/dev/null 2>>"$WORK/stderr.log" ||
		{ echo "fleet.sh: '$1' failed (see $WORK/stderr.log)" >&2; exit 1; }
	awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$WORK/time"
}

declare -A W C
for n in "${NAMES[@]}"; do W[$n]=""; C[$n]=""; done
for ((r = 0; r < RUNS; r++)); do
	for n in "${NAMES[@]}"; do
		read -r w c < <(run "$n")
		W[$n]+="$w "
		C[$n]+="$c "
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== $N stores of $(du -sh "${stores[0]}" | cut -f1) each ($share), --jobs $JOBS; $(nproc) CPUs; load: $(uptime | sed 's/.*load average: //')"
echo "   page cache warm; medians of $RUNS runs, commands alternating"
echo
printf '%-40s %9s %9s %12s\n' "command" "seconds" "cpu s" "per store ms"
for n in "${NAMES[@]}"; do
	mw=$(echo "${W[$n]}" | median)
	mc=$(echo "${C[$n]}" | median)
	W[$n]=$mw
	C[$n]=$mc
	awk -v n="$n" -v w="$mw" -v c="$mc" -v k="$N" 'BEGIN { printf "%-40s %9.3f %9.2f %12.2f\n", n, w, c, w * 1000 / k }'
done
share_t=${W["verify SHARE --jobs $JOBS"]}
journal_t=${W["verify SHARE --jobs $JOBS --journal"]}
loop_t=${W["shell loop, one verify per store"]}
echo
awk -v s="$share_t" -v l="$loop_t" 'BEGIN { r = s / l; printf "verify SHARE / shell loop:            %.2fx  (goal <= 0.60x: %s)\n", r, (r <= 0.6 ? "met" : "NOT met") }'
awk -v j="$journal_t" -v s="$share_t" 'BEGIN { r = j / s; printf "with --journal / without:             %.3fx  (goal < 1.05x: %s)\n", r, (r < 1.05 ? "met" : "NOT met") }'
echo "the journal syncs one line per store (fdatasync) on $(df -T "$WORK" | awk 'NR == 2 { print $2 }')."
