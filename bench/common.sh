# Sourced first by every benchmark (scripts/bench-*): moves to the repository root, reads
# scripts/env.sh, and gives the one way benchmarks build release binaries: `release_build
# CARGO_ARGS...` into a target dir of their own ($JIELONG_RELEASE_TARGET, default
# $JIELONG_CACHE/target-release), so a benchmark never blocks or invalidates the debug build
# of development; the binaries are then in $release. Also: `bench_corpus SIZE_MB` (the
# generated English/Chinese corpus, made once into runs/bench/; sets dir and corpus) and
# readers of `/usr/bin/time -v` logs.
bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$bench/.." && pwd)"
cd "$root"
source "$root/scripts/env.sh"
export CARGO_TARGET_DIR="${JIELONG_RELEASE_TARGET:-$JIELONG_CACHE/target-release}"
release="$CARGO_TARGET_DIR/release"

release_build() { cargo build --release --locked "$@" >&2; }

bench_corpus() {
  local size_mb=$1
  dir="$root/runs/bench"
  mkdir -p "$dir"
  corpus="$dir/corpus-${size_mb}mb.jsonl"
  if [ ! -s "$corpus" ]; then
    echo "generating a ${size_mb} MB corpus in $corpus" >&2
    python3 "$bench/gen_corpus.py" "$size_mb" "$corpus"
  fi
}

need_time() {
  [ -x /usr/bin/time ] || { echo "$(basename "$0") needs /usr/bin/time (Debian package: time)" >&2; exit 1; }
}

# From a `/usr/bin/time -v` log: wall seconds, peak RSS in MiB, user + system CPU seconds.
time_wall() { awk '/Elapsed \(wall clock\)/ {n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$1"; }
time_peak_mib() { awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); printf "%.0f", $2 / 1024}' "$1"; }
time_cpu() { awk -F: '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$1"; }

# The venv of the peer benchmarks run beside ours (datatrove 0.10.1 with its processing extras),
# made once in $JIELONG_CACHE; sets datatrove_python.
datatrove_venv() {
  local venv="$JIELONG_CACHE/bench-venv-datatrove"
  if ! "$venv/bin/python" -c 'import datatrove, spacy, orjson' 2>/dev/null; then
    echo "making the datatrove venv in $venv (one time)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'datatrove[processing]==0.10.1' orjson spacy >&2
  fi
  datatrove_python="$venv/bin/python"
}
