#!/usr/bin/env bash
# Drives the real c3-tui binary in tmux: open -> select a document -> select
# a chunk -> r (reconstruct with the model) -> q, checking the screen at each
# step with capture-pane and that the terminal is restored afterwards.
#
# Environment:
#   C3_TUI_BIN    the c3-tui binary   [${CARGO_TARGET_DIR:-target}/debug/c3-tui]
#   C3_BIN        the c3 binary, used to build a store when C3_TUI_STORE is unset
#                                     [${CARGO_TARGET_DIR:-target}/debug/c3]
#   C3_TUI_STORE  an existing store to browse [a temp store with Alice ingested]
#   C3_TUI_MODEL  the checkpoint [tests/fixtures/golden/c3-tiny]
#   C3_TUI_DOC    a substring of the document to select [alice]
#   C3_TUI_KEEP   set to leave the tmux session running for inspection
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
tui=${C3_TUI_BIN:-$target/debug/c3-tui}
c3=${C3_BIN:-$target/debug/c3}
model=${C3_TUI_MODEL:-$root/tests/fixtures/golden/c3-tiny}
doc=${C3_TUI_DOC:-alice}

command -v tmux >/dev/null || { echo "tmux not installed"; exit 2; }
[ -x "$tui" ] || { echo "no c3-tui binary at $tui (cargo build -p c3-tui)"; exit 2; }

work=$(mktemp -d)
session="c3tui-$$"
cleanup() {
    if [ -z "${C3_TUI_KEEP:-}" ]; then
        tmux kill-session -t "$session" 2>/dev/null || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT

store=${C3_TUI_STORE:-}
if [ -z "$store" ]; then
    [ -x "$c3" ] || { echo "no c3 binary at $c3 (cargo build --bin c3)"; exit 2; }
    store=$work/store
    "$c3" --store "$store" --model "$model" ingest \
        "$root/tests/fixtures/corpus/alice-in-wonderland.txt" >/dev/null 2>&1
fi

fail() {
    echo "FAIL: $*"
    echo "---- screen ----"
    tmux capture-pane -p -t "$session" 2>/dev/null || true
    exit 1
}

# Wait until the screen shows $1 (a fixed string), at most $2 seconds.
wait_for() {
    local want=$1 secs=${2:-20} i
    for ((i = 0; i < secs * 10; i++)); do
        if tmux capture-pane -p -t "$session" | grep -qF -- "$want"; then
            return 0
        fi
        sleep 0.1
    done
    fail "screen never showed: $want"
}

# The pane runs a shell that records the tty settings before and after the
# TUI, so a terminal left in raw mode is caught.
cat >"$work/run.sh" <<RUN
before=\$(stty -g)
"$tui" --store "$store" --model "$model" --max-new-tokens 24
echo \$? >"$work/exit"
after=\$(stty -g)
[ "\$before" = "\$after" ] && echo restored >"$work/tty" || echo raw >"$work/tty"
sleep 600
RUN
tmux new-session -d -s "$session" -x 120 -y 40 "bash $work/run.sh"

echo "step: open"
wait_for "c3 memory"
wait_for "Documents"
wait_for "(loaded)" 60

echo "step: select document ($doc)"
tmux send-keys -t "$session" / "$doc" Enter
wait_for "Documents 1/"
tmux send-keys -t "$session" Enter
wait_for "Chunks of"

echo "step: select chunk 1"
tmux send-keys -t "$session" Down
wait_for "Chunk 1 · bytes"

echo "step: r"
tmux send-keys -t "$session" r
wait_for "Original · chunk 1"
wait_for "precision" 120
wait_for "edit similarity"
tmux capture-pane -p -t "$session" >"$work/screen.txt"

echo "step: q"
tmux send-keys -t "$session" q
for ((i = 0; i < 100; i++)); do
    [ -f "$work/tty" ] && break
    sleep 0.1
done
[ -f "$work/exit" ] || fail "c3-tui did not exit on q"
[ "$(cat "$work/exit")" = 0 ] || fail "c3-tui exited with $(cat "$work/exit")"
[ "$(cat "$work/tty")" = restored ] || fail "terminal left in raw mode"
if tmux capture-pane -p -t "$session" | grep -qF "c3 memory"; then
    fail "the TUI is still on screen after q"
fi
tmux kill-session -t "$session"

# A panic must restore the terminal too, and print its message.
echo "step: panic"
rm -f "$work/exit" "$work/tty"
sed -e "s|^\"$tui\"|C3_TUI_TEST_PANIC=1 \"$tui\"|" "$work/run.sh" >"$work/panic.sh"
tmux new-session -d -s "$session" -x 120 -y 40 "bash $work/panic.sh"
wait_for "Documents"
tmux send-keys -t "$session" '!'
for ((i = 0; i < 100; i++)); do
    [ -f "$work/tty" ] && break
    sleep 0.1
done
[ -f "$work/exit" ] || fail "c3-tui did not end on the test panic"
[ "$(cat "$work/exit")" = 101 ] || fail "panic exit status $(cat "$work/exit"), expected 101"
[ "$(cat "$work/tty")" = restored ] || fail "terminal left in raw mode after a panic"
wait_for "test panic requested"
tmux kill-session -t "$session"
passed=2

# `c3 tui` starts the same program when c3 is given (C3_TUI_VIA_C3=1).
if [ "${C3_TUI_VIA_C3:-}" = 1 ]; then
    echo "step: c3 tui"
    rm -f "$work/exit" "$work/tty"
    sed -e "s|^\"$tui\" |\"$c3\" tui |" "$work/run.sh" >"$work/via.sh"
    tmux new-session -d -s "$session" -x 120 -y 40 "bash $work/via.sh"
    wait_for "c3 memory"
    wait_for "(loaded)" 60
    tmux send-keys -t "$session" q
    for ((i = 0; i < 100; i++)); do
        [ -f "$work/tty" ] && break
        sleep 0.1
    done
    [ "$(cat "$work/exit" 2>/dev/null)" = 0 ] || fail "c3 tui did not quit cleanly"
    passed=3
fi

echo "---- screen before q ----"
cat "$work/screen.txt"
echo "tui_tmux: $passed passed, 0 failed"
