# shellcheck shell=bash
# scripts/lib/netns-guard.sh — run cleanup actions on EXIT/INT/TERM, last registered first.
#
# Usage (in a script with `set -euo pipefail`):
#   . "$(dirname "$0")/lib/netns-guard.sh"
#   guard_init                       # installs the traps (idempotent)
#   guard_add lab_down "$PREFIX"     # register a command (words, not a string to eval)
#   guard_add kill "$pid"
#   ...                              # on exit, INT or TERM: kill ..., then lab_down ...
#   guard_clear                      # drop all registered commands (keep what was set up)
#
# Cleanup commands run with errexit off and their failures ignored; every command runs
# once even if several signals arrive. INT/TERM exit with 130/143 after cleaning up.

if [[ -n "${_NETNS_GUARD_LOADED:-}" ]]; then
    return 0
fi
_NETNS_GUARD_LOADED=1

_GUARD_CMDS=()      # each entry: a command line encoded with printf %q
_GUARD_DONE=0

guard_add() {
    local quoted
    quoted="$(printf '%q ' "$@")"
    _GUARD_CMDS+=("$quoted")
}

guard_clear() {
    # forget every registered command (e.g. once a setup succeeded and must be kept)
    _GUARD_CMDS=()
}

guard_run() {
    local i
    [[ $_GUARD_DONE == 1 ]] && return 0
    _GUARD_DONE=1
    set +e
    for ((i = ${#_GUARD_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${_GUARD_CMDS[i]}" >/dev/null 2>&1
    done
    _GUARD_CMDS=()
    return 0
}

_guard_on_signal() {
    local code=$1
    trap - EXIT INT TERM
    guard_run
    exit "$code"
}

guard_init() {
    trap 'guard_run' EXIT
    trap '_guard_on_signal 130' INT
    trap '_guard_on_signal 143' TERM
}
