#!/usr/bin/env bash
# Benchmark usmtkit on an archive in S3-compatible object storage against
# the same archive on disk, with the requests each command sent beside its
# time (USMTKIT_S3_REQUESTS; docs/object-storage.md). The server is a local
# SeaweedFS (scripts/s3server.sh) on loopback, so the times show usmtkit's
# request pattern and the server's cost, not a network's.
#
#   scripts/bench/s3.sh                 # 200 MB and 2 GB profile stores
#   SIZES=300M scripts/bench/s3.sh
#
# Rows, per size (medians of RUNS, default 3):
#   compress -o         local file vs multipart upload into the bucket,
#                       with usmtkit's CPU seconds and the server's beside
#   curl PUT            the finished archive uploaded by curl: the server's
#                       cost of taking in those bytes, without usmtkit
#   info, ls -R         open (footer + TOC) and list
#   verify              every chunk's checksum
#   extract             every file to a scratch folder
#   mount: list, 300 whole files, 2000 random 4 KiB reads, read everything,
#                       through `usmtkit mount` (randread), a fresh mount each
#   curl GET            the whole object with curl: the floor for reading
#                       everything from this server
#   prefix rows         PREFIX_N (default 200) small archives under one
#                       prefix: info PREFIX, verify PREFIX --jobs 2, and a
#                       shell loop of one info per archive (0: skipped;
#                       SIZES= PREFIX_N=200 runs these rows alone)
# and the ratio bucket / disk (for MB/s: bucket / disk, higher is better). Environment: SIZES, RUNS, ONLY=compress (the compress
# and curl PUT rows alone), PREFIX_N, WORK (scratch,
# default /tmp/usmtkit-bench-s3; stores are kept between runs), PORT
# (default 18433).
set -euo pipefail

SIZES=${SIZES-200M 2G} # empty: no store sizes (the prefix rows alone)
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/usmtkit-bench-s3}
PORT=${PORT:-18433}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for t in curl fusermount3; do
	command -v "$t" >/dev/null || { echo "s3.sh: $t is not installed (apt-get install curl fuse3)" >&2; exit 1; }
done
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/usmtkit" ./cmd/usmtkit && go build -o "$WORK/bin/mkstore" ./fixtures/cmd/mkstore &&
	go build -o "$WORK/bin/randread" ./scripts/bench/randread)
U="$WORK/bin/usmtkit"
R="$WORK/bin/randread"
. "$ROOT/scripts/bench/lib.sh"

export AWS_ACCESS_KEY_ID=usmtkit AWS_SECRET_ACCESS_KEY=usmtkit-secret
"$ROOT/scripts/s3server.sh" build
data="$WORK/s3data"
MNT="$WORK/mnt"
mkdir -p "$data" "$MNT"
cleanup() {
	fusermount3 -u -z "$MNT" 2>/dev/null || true
	"$ROOT/scripts/s3server.sh" stop "$data"
}
trap cleanup EXIT
ep=$("$ROOT/scripts/s3server.sh" start "$data" "$PORT" | tail -1)
export AWS_ENDPOINT_URL=$ep
curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X PUT "$ep/bench" >/dev/null 2>&1 || true

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# timed OUT CMD...: runs CMD RUNS times; prints the median seconds. The
# last run's stderr is kept in OUT (its "s3 requests:" line).
timed() {
	local out=$1 s e
	shift
	for ((i = 0; i < RUNS; i++)); do
		s=$(now)
		USMTKIT_S3_REQUESTS=1 "$@" >/dev/null 2>"$out" || true
		e=$(now)
		awk -v a="$s" -v b="$e" 'BEGIN{printf "%.3f\n", b-a}'
	done | median
}

# server_cpu: CPU seconds (user + system) the S3 server's processes have
# used so far (its process group, from /proc).
server_cpu() {
	local pg
	pg=$(cat "$data/weed.pid")
	# A process that ends between the glob and its read makes awk exit 2
	# after its END; under set -e that ended the whole benchmark.
	awk -v pg="$pg" -v hz="$(getconf CLK_TCK)" '$5 == pg { t += $14 + $15 } END { printf "%.2f\n", t / hz }' /proc/[0-9]*/stat 2>/dev/null || true
}

# timed_cpu OUT CMD...: like timed, but prints three medians: wall
# seconds, usmtkit's CPU seconds (user + system of CMD) and the S3
# server's CPU seconds meanwhile. usmtkit and the server share this
# machine's CPUs, so wall time on loopback is bounded below by their sum
# over the CPUs; the client's CPU is what a server elsewhere leaves.
timed_cpu() {
	local out=$1 s e c0 c1 tf
	tf=$(mktemp "$WORK/time.XXXXXX")
	shift
	for ((i = 0; i < RUNS; i++)); do
		c0=$(server_cpu)
		s=$(now)
		{ TIMEFORMAT='%U %S'; time USMTKIT_S3_REQUESTS=1 "$@" >/dev/null 2>"$out"; } 2>"$tf" || true
		e=$(now)
		c1=$(server_cpu)
		awk -v a="$s" -v b="$e" -v c0="$c0" -v c1="$c1" '{printf "%.3f %.2f %.2f\n", b-a, $1+$2, c1-c0}' "$tf"
	done >"$tf.all"
	for col in 1 2 3; do awk -v c=$col '{print $c}' "$tf.all" | median; done | paste -sd' '
	rm -f "$tf" "$tf.all"
}

# requests OUT: the request counts of a run, shortened.
requests() {
	sed -n 's/^usmtkit: s3 requests: //p' "$1" | awk -F'; ' '{print $1}' | sed 's/, 0 [A-Za-z]*//g' | tail -1
}

# mount_phase ARCHIVE MODE OUT: one randread phase (list | files | 4k |
# seq) on a fresh mount of ARCHIVE; prints randread's line. The mount's
# requests (printed when it ends) are kept in OUT.
mount_phase() {
	local arch=$1 mode=$2 out=$3 pid line
	USMTKIT_S3_REQUESTS=1 "$U" -q mount --view store "$arch" "$MNT" 2>"$out" &
	pid=$!
	for _ in $(seq 1 100); do grep -q " $MNT " /proc/self/mountinfo && break; sleep 0.1; done
	case $mode in
	list) line="entries=$(find "$MNT" | wc -l)" ;;
	files) line=$("$R" -root "$MNT" -mode files -n 300 2>/dev/null || echo "failed") ;;
	4k) line=$("$R" -root "$MNT" -mode 4k -n 2000 2>/dev/null || echo "failed") ;;
	seq) line=$("$R" -root "$MNT" -mode seq 2>/dev/null || echo "failed") ;;
	esac
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" || true
	wait "$pid" || true
	echo "$line"
}

# gets OUT: the GETs in a run's requests line.
gets() { sed -n 's/^usmtkit: s3 requests: .* \([0-9]*\) GET.*/\1/p' "$1" | tail -1; }

row() { printf '%-22s %10s %10s %7s   %s\n' "$@"; }

for size in $SIZES; do
	prof="$WORK/profile-$size"
	profile_store "$prof" "$WORK/bin/mkstore" -size "$size"
	store="$prof/store"
	arch="$prof/store.tar.zst"
	key="s3://bench/$size.tar.zst"
	bytes=$(du -sb "$store" | cut -f1)

	echo
	echo "== $size profile store ($bytes bytes), medians of $RUNS; bucket at $ep (loopback)"
	row "operation" "disk s" "bucket s" "ratio" "requests (bucket)"
	read -r td cd _ < <(timed_cpu "$WORK/err" "$U" -q compress --force "$store" -o "$arch")
	read -r tb cb sb < <(timed_cpu "$WORK/err" "$U" -q compress --force "$store" -o "$key")
	row "compress -o" "$td" "$tb" "$(awk -v a="$tb" -v b="$td" 'BEGIN{printf "%.2f", a/b}')" "$(requests "$WORK/err") (goal: ratio at most 1.3)"
	row "  usmtkit CPU-s" "$cd" "$cb" "$(awk -v a="$cb" -v b="$cd" 'BEGIN{if (b>0) printf "%.2f", a/b}')" "usmtkit's own CPU (user + system)"
	row "  server CPU-s" "" "$sb" "" "SeaweedFS meanwhile, on the same CPUs"
	asize=$(stat -c %s "$arch")
	read -r tp _ sp < <(timed_cpu "$WORK/err" curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -T "$arch" "$ep/bench/$size.curl-put")
	row "curl PUT (floor)" "" "$tp" "" "the finished archive in 1 PUT; server CPU-s $sp"
	[ "${ONLY:-}" = compress ] && continue

	for op in "info" "ls -R" "verify" "extract"; do
		case $op in
		extract)
			dd="$WORK/x-disk" bd="$WORK/x-bucket"
			td=$(timed "$WORK/err" bash -c "rm -rf '$dd'; '$U' -q extract '$arch' '$dd'")
			tb=$(timed "$WORK/err" bash -c "rm -rf '$bd'; USMTKIT_S3_REQUESTS=1 '$U' -q extract '$key' '$bd'")
			rm -rf "$dd" "$bd"
			;;
		*)
			td=$(timed "$WORK/err" "$U" -q $op "$arch")
			tb=$(timed "$WORK/err" "$U" -q $op "$key")
			;;
		esac
		row "$op" "$td" "$tb" "$(awk -v a="$tb" -v b="$td" 'BEGIN{printf "%.2f", a/b}')" "$(requests "$WORK/err")"
	done

	p() { echo "$1" | tr ' ' '\n' | sed -n "s|^$2=||p" | head -1; }
	mount_phase "$key" list "$WORK/err" >/dev/null
	row "mount: list everything" "" "" "" "$(requests "$WORK/err") (goal: at most 3 GETs)"
	ld=$(mount_phase "$arch" files "$WORK/err")
	lb=$(mount_phase "$key" files "$WORK/err")
	row "mount: 300 files p50" "$(p "$ld" p50)" "$(p "$lb" p50)" "" "$(requests "$WORK/err")"
	row "mount: 300 files p99" "$(p "$ld" p99)" "$(p "$lb" p99)" "" ""
	ld=$(mount_phase "$arch" 4k "$WORK/err")
	lb=$(mount_phase "$key" 4k "$WORK/err")
	g=$(gets "$WORK/err")
	row "mount: 2000 4 KiB p50" "$(p "$ld" p50)" "$(p "$lb" p50)" "" "$(requests "$WORK/err"): $(awk -v g="${g:-0}" 'BEGIN{printf "%.2f", g/2000}') GET per read (goal: at most 1)"
	row "mount: 2000 4 KiB p99" "$(p "$ld" p99)" "$(p "$lb" p99)" "" ""
	ld=$(mount_phase "$arch" seq "$WORK/err")
	lb=$(mount_phase "$key" seq "$WORK/err")
	row "mount: read all MB/s" "$(p "$ld" MB/s)" "$(p "$lb" MB/s)" "$(awk -v a="$(p "$lb" MB/s)" -v b="$(p "$ld" MB/s)" 'BEGIN{if (b>0) printf "%.2f", a/b}')" "$(requests "$WORK/err") (goal: ratio at least 0.5)"

	tc=$(timed "$WORK/err" curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -o /dev/null "$ep/bench/$size.tar.zst")
	row "curl GET (floor)" "" "$tc" "" "1 GET of $asize bytes"
done

# Archives under a prefix (docs/object-storage.md): PREFIX_N copies of the
# USMT4 fixture store in one SMPSTORE folder, compressed over many stores
# to s3://bench/prefix-N/, then `info PREFIX` (every archive's index and
# users), `verify PREFIX --jobs 2`, and what a script would run without
# prefixes: one `usmtkit info s3://...` per archive.
[ "${ONLY:-}" = compress ] && exit 0
[ "${PREFIX_N:-200}" -gt 0 ] || exit 0
n=${PREFIX_N:-200}
share="$WORK/share-$n"
if [ ! -d "$share" ]; then
	one=$("$WORK/bin/mkstore" -kind usmt4 -out "$WORK/one-usmt4")
	mkdir -p "$share/SMPSTORE_1A2B3C4D\$"
	for ((i = 0; i < n; i++)); do cp -a "$one" "$share/SMPSTORE_1A2B3C4D\$/PC$(printf %04d "$i")"; done
fi
pfx="s3://bench/prefix-$n/"
"$U" -q compress "$share" -o "$pfx" --force --jobs 2 >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
"$U" info --json "$pfx" | sed -n 's/^      "input": "\(s3:[^"]*\)",$/\1/p' >"$WORK/prefix-archives.txt"
[ "$(wc -l <"$WORK/prefix-archives.txt")" = "$n" ] || { echo "s3.sh: info $pfx listed $(wc -l <"$WORK/prefix-archives.txt") archives, not $n" >&2; exit 1; }
echo
echo "== $n small archives under $pfx, medians of $RUNS"
row "operation" "" "seconds" "ms each" "requests"
for op in info verify; do
	args=("$pfx")
	[ $op = verify ] && args+=(--jobs 2)
	t=$(timed "$WORK/err" "$U" -q $op "${args[@]}")
	c=$(sed -n 's/^usmtkit: s3 requests: .*; \([0-9]*\) connections opened$/\1/p' "$WORK/err" | tail -1)
	row "$op PREFIX" "" "$t" "$(awk -v t="$t" -v n="$n" 'BEGIN{printf "%.1f", 1000*t/n}')" "$(requests "$WORK/err"), ${c:-?} connections opened"
done
t=$(timed "$WORK/err" bash -c "while IFS= read -r u; do '$U' -q info \"\$u\" >/dev/null || exit 1; done <'$WORK/prefix-archives.txt'")
row "loop: info per archive" "" "$t" "$(awk -v t="$t" -v n="$n" 'BEGIN{printf "%.1f", 1000*t/n}')" "one process per archive"
