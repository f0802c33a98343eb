#!/usr/bin/env bash
# Measures what the TUI costs while dbt runs: the demo backfill with N workers in a
# private tmux server, then the TUI process's own CPU time (utime + stime; the run
# itself is a process of its own) and its frame statistics (DBT_HERD_FRAME_STATS).
#
#   scripts/bench-tui.sh [WORKERS] [DAYS]     default: 4 workers, 12 days
#   SIZE=200x50 scripts/bench-tui.sh 4
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-4}
days=${2:-12}
size=${SIZE:-160x48}
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-tui.XXXXXX")
sock="herd-bench-tui-$$"
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet
herd="$(pwd)/target/release/dbt-herd"
"$herd" demo --prepare-only --dir "$work/demo" >/dev/null

tmux -L "$sock" -f /dev/null new-session -d -s bench -x "${size%x*}" -y "${size#*x}" \
  "DBT_HERD_FRAME_STATS=1 '$herd' demo --workers $workers --days $days --dir '$work/demo' 2>'$work/frames'; sleep 600"
screen() { tmux -L "$sock" capture-pane -p -t bench; }

start=$(date +%s.%N)
pid=""
for _ in $(seq 100); do
  pid=$(pgrep -f "^$herd demo --workers $workers" | head -n 1 || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "bench-tui: dbt-herd did not start" >&2; exit 1; }

# Done when nothing runs or waits (the late window stays failed until R).
until screen | head -n 1 | grep -q '0 running · 0 pending'; do sleep 0.5; done
end=$(date +%s.%N)
ticks=$(getconf CLK_TCK)
cpu=$(awk -v t="$ticks" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) / t }' "/proc/$pid/stat")
rss=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$pid/status")
tmux -L "$sock" send-keys -t bench q
for _ in $(seq 100); do grep -q "^frames:" "$work/frames" 2>/dev/null && break; sleep 0.1; done

printf 'workers %s, %s daily windows, terminal %s\n' "$workers" "$days" "$size"
awk -v s="$start" -v e="$end" -v c="$cpu" -v r="$rss" 'BEGIN {
  w = e - s
  printf "wall %.1f s · dbt-herd CPU %.2f s (%.1f%% of one core) · peak RSS %.0f MiB\n", w, c, 100 * c / w, r
}'
grep "^frames:" "$work/frames"
