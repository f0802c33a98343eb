#!/usr/bin/env bash
# Takes real screenshots of the TUI running the demo backfill, into screenshots/:
#
#   grid.png            the worker grid mid-run
#   zoom.png            one batch's log, zoomed (Enter)
#   table-failure.png   the batch table with the failed 2024-01-13 window selected
#   help.png            the help overlay (?)
#   table-filtered.png  the batch table filtered (/) with three rows marked (Space)
#
# The demo runs in a detached tmux session of a fixed size on a private tmux socket;
# each state is waited for by polling the pane's text, captured with its colours
# (tmux capture-pane -e) and rendered to PNG by scripts/render_capture.py, with
# Pillow from a private tools venv (created on first use).
#
#   scripts/screenshots.sh
#   COLS=160 ROWS=45 FONT_SIZE=15 scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/screenshots"
cols=${COLS:-160}
rows=${ROWS:-45}
font_size=${FONT_SIZE:-15}

command -v tmux >/dev/null || { echo "screenshots: tmux is needed (apt-get install tmux)" >&2; exit 2; }

# ---------------------------------------------------------------- tools venv
home=${DBT_HERD_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/dbt-herd}
venv="$home/tools-venv"
if ! "$venv/bin/python" -c 'import PIL' 2>/dev/null; then
  echo "screenshots: creating $venv with Pillow" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'Pillow>=10,<12'
fi
py="$venv/bin/python"

cargo build --release --quiet
herd="$root/target/release/dbt-herd"

# ---------------------------------------------------------------- tmux session
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-shots.XXXXXX")
sock="herd-shots-$$"
t() { tmux -L "$sock" "$@"; }
cleanup() {
  t kill-server 2>/dev/null || true
  # Killing the server hangs up on dbt-herd, which then stops its dbt processes:
  # let it finish before removing the directory they write to.
  for _ in $(seq 1 120); do
    pgrep -f -- "--dir $work/demo" >/dev/null || break
    sleep 0.25
  done
  rm -rf "$work"
}
trap cleanup EXIT
unset TMUX

cmd="env TERM=xterm-256color $(printf '%q' "$herd") demo --workers 4 --days 12 --start 2024-01-10"
cmd+=" --dir $(printf '%q' "$work/demo"); echo; echo dbt-herd exited with status \$?; sleep 3600"
# -f /dev/null: none of the user's tmux settings; no status line, so the pane is the window.
t -f /dev/null new-session -d -s herd -x "$cols" -y "$rows" "$cmd"
t set-option -t herd status off >/dev/null
t resize-window -t herd -x "$cols" -y "$rows" 2>/dev/null || true
pane="herd:0.0"

screen() { t capture-pane -p -t "$pane"; }
keys() { t send-keys -t "$pane" "$@"; }

# try_wait TIMEOUT_S TEST_FUNCTION: polls the pane's text (in $s) until TEST_FUNCTION
# succeeds (status 0) or the time is up (status 1).
try_wait() {
  local deadline=$((SECONDS + $1))
  while :; do
    s=$(screen)
    if "$2"; then return 0; fi
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.25
  done
}

# wait_for TIMEOUT_S DESCRIPTION TEST_FUNCTION: the same, but on timeout prints the
# last screen and exits.
wait_for() {
  local timeout=$1 what=$2 test=$3 deadline
  deadline=$((SECONDS + timeout))
  while :; do
    s=$(screen)
    if "$test"; then return 0; fi
    if ((SECONDS >= deadline)); then
      {
        echo "screenshots: timed out after ${timeout}s waiting for: $what"
        echo "---- last screen ----"
        printf '%s\n' "$s"
        echo "---------------------"
      } >&2
      exit 1
    fi
    sleep 0.25
  done
}

mkdir -p "$out"
written=()
# shot NAME: captures the pane with its colours and renders it to screenshots/NAME.png.
shot() {
  t capture-pane -e -p -N -t "$pane" >"$work/$1.txt"
  written+=("$1")
}

# a. the grid mid-run: batches running and dbt output in the panes.
log_lines() { grep -oE '│(START|OK|PASS|SKIP|ERROR|FAIL) ' <<<"$s" | wc -l; }
grid_busy() {
  [[ $(head -n 1 <<<"$s") =~ [1-9][0-9]*\ running ]] && grep -qE '│(START |OK model)' <<<"$s" \
    && (($(log_lines) >= 8))
}
# Well filled: most of the four panes' 17 log rows in use.
grid_full() { grid_busy && (($(log_lines) >= 44)); }
# The first run may create the dbt venv (tens of seconds, longer on a slow network).
wait_for 600 "the grid with running batches and dbt log lines" grid_busy
try_wait 15 grid_full || true
shot grid

# b. zoom the focused pane's batch log (soon after the grid, while its batch runs).
grid_back() { ! grep -qE '┌ help · |Esc back · |┌ batches \(' <<<"$s" && grep -q '^┌' <<<"$s"; }
keys Enter
zoomed() { grep -q 'Esc back · ' <<<"$s"; }
wait_for 10 "the zoomed log (Enter)" zoomed
sleep 1
shot zoom
keys Escape
wait_for 10 "the grid again (Esc)" grid_back

# c. the help overlay, over the busy grid.
keys '?'
help_shown() { grep -q '┌ help · ' <<<"$s"; }
wait_for 10 "the help overlay (?)" help_shown
sleep 0.3
shot help
keys Escape
wait_for 10 "the grid again (Esc)" grid_back

# d. the batch table with the failed window selected, its detail box below.
failed() { head -n 1 <<<"$s" | grep -q FAILED; }
wait_for 240 "a FAILED batch in the header (the 2024-01-13 window)" failed
keys Tab
table() { grep -q '┌ batches (' <<<"$s"; }
wait_for 10 "the batch table (Tab)" table
keys g
sleep 0.3
found=
for _ in $(seq 1 40); do
  s=$(screen)
  if grep '▶' <<<"$s" | grep -q FAILED; then
    found=1
    break
  fi
  keys j
  sleep 0.3
done
if [ -z "$found" ]; then
  { echo "screenshots: no FAILED row in the batch table"; printf '%s\n' "$s"; } >&2
  exit 1
fi
# The detail box is below the table's bottom border (the table's own "first error"
# column must not count).
detail() { sed -n '/^└/,$p' <<<"$s" | grep -qE 'compiled SQL|error|ERROR'; }
wait_for 10 "the failed batch's detail box" detail
sleep 0.5
shot table-failure

# e. the table filtered to the windows of 2024-01-1x, three of them marked.
keys / 2 0 2 4 - 0 1 - 1 Enter
filtered() { grep -q '┌ batches [0-9]*/[0-9]* · /2024-01-1' <<<"$s"; }
wait_for 10 "the filtered table (/)" filtered
keys g Space Space Space
marked() { grep -q '3 marked' <<<"$s"; }
wait_for 10 "three marked rows (Space)" marked
sleep 0.3
shot table-filtered
# One Escape at a time: one followed at once by a key reads as Alt+key.
for k in Escape Escape Tab; do
  keys "$k"
  sleep 0.3
done
wait_for 10 "the grid again (Esc Esc Tab)" grid_back

# f. quit, confirming if batches still run.
sleep 0.3
keys q
exited() { grep -q 'dbt-herd exited with status' <<<"$s"; }
confirm_or_exit() { grep -q 'Stop them and quit?' <<<"$s" || exited; }
wait_for 10 "the quit confirmation or the end of dbt-herd" confirm_or_exit
if ! exited; then
  keys y
fi
wait_for 60 "dbt-herd to stop its batches and exit" exited

# ---------------------------------------------------------------- render
for name in "${written[@]}"; do
  "$py" scripts/render_capture.py "$work/$name.txt" "$out/$name.png" \
    --cols "$cols" --rows "$rows" --font-size "$font_size"
  echo "screenshots/$name.png"
done
