# Sourced by scripts/bench-pipeline and scripts/bench-tokenize once they have read their
# arguments ($here, $root and $size_mb set, env.sh sourced): the release build of the
# pipeline in a target dir of its own (JIELONG_RELEASE_TARGET overrides it), so it never
# blocks the debug builds of development; the generated corpus; readers of the logs of
# `/usr/bin/time -v`. Sets bin, dir and corpus.
export CARGO_TARGET_DIR="${JIELONG_RELEASE_TARGET:-$JIELONG_CACHE/target-release}"
[ -x /usr/bin/time ] || { echo "$(basename "$0") needs /usr/bin/time (Debian package: time)" >&2; exit 1; }
cargo build --release -p pipeline --locked >&2
bin="$CARGO_TARGET_DIR/release/pipeline"
dir="$root/runs/bench"
mkdir -p "$dir"
# A deterministic English/Chinese corpus of size_mb megabytes, generated once and reused.
corpus="$dir/corpus-${size_mb}mb.jsonl"
if [ ! -s "$corpus" ]; then
  echo "generating a ${size_mb} MB corpus in $corpus" >&2
  python3 "$here/gen_bench_corpus.py" "$size_mb" "$corpus"
fi

# From a `/usr/bin/time -v` log: wall seconds, peak RSS in MiB, user + system CPU seconds.
time_wall() { awk '/Elapsed \(wall clock\)/ {n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$1"; }
time_peak_mib() { awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); printf "%.0f", $2 / 1024}' "$1"; }
time_cpu() { awk -F: '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$1"; }
