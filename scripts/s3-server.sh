#!/usr/bin/env bash
# A local S3-compatible server (moto, pinned below) for the S3 integration tests (tests/s3_store.rs).
#
#   scripts/s3-server.sh install                  create/refresh the venv target/s3-venv only
#   scripts/s3-server.sh start PORTFILE [WATCH]   start moto_server on 127.0.0.1:<free port> in the
#                                                 background; when it answers, write its URL
#                                                 (http://127.0.0.1:PORT) to PORTFILE, its pid to
#                                                 PORTFILE.pid and its log to PORTFILE.log. With
#                                                 WATCH (a pid), the server also stops by itself
#                                                 within a second of that process exiting.
#   scripts/s3-server.sh stop PORTFILE            stop the server started with PORTFILE.
#
# Needs only python3 (with venv or pip) and access to PyPI on first use. Never reads standard
# input. Background processes never hold this script's stdout/stderr, so a caller that captures
# the output returns as soon as the script does. Exits non-zero on any failure.
#
# moto checks no credentials (any access key works) and bucket names need at least 3 characters.
# Its conditional create (If-None-Match: *) is correct for one writer at a time but is a
# check-then-put without a lock: under truly simultaneous creates of one key two may win.
set -euo pipefail

MOTO_PIN='moto[server]==5.2.5'

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

venv=target/s3-venv
python=${PYTHON:-python3}

die() {
    echo "s3-server.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 install | start PORTFILE [WATCH_PID] | stop PORTFILE"
}

install() {
    mkdir -p target
    # Two test binaries may call this at once: serialize venv creation.
    exec 9>target/s3-venv.lock
    if command -v flock >/dev/null 2>&1; then
        flock -w 600 9 || die "timed out waiting for target/s3-venv.lock"
    fi
    if [ -x "$venv/bin/moto_server" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$MOTO_PIN" ]; then
        exec 9>&-
        return 0
    fi
    command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON=/path/to/python3)"
    if [ ! -x "$venv/bin/python" ]; then
        echo "s3-server.sh: creating $venv" >&2
        rm -rf "$venv"
        if ! "$python" -m venv "$venv" </dev/null >&2; then
            # Debian-style Pythons without ensurepip: a bare venv, filled by the system pip.
            echo "s3-server.sh: 'venv' with pip failed; retrying --without-pip" >&2
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv" </dev/null >&2 || die "cannot create $venv"
        fi
    fi
    echo "s3-server.sh: installing $MOTO_PIN into $venv" >&2
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        "$venv/bin/python" -m pip install -q "$MOTO_PIN" </dev/null >&2 || die "pip install $MOTO_PIN failed"
    else
        "$python" -m pip --python "$venv/bin/python" install -q "$MOTO_PIN" </dev/null >&2 ||
            die "pip install $MOTO_PIN failed"
    fi
    [ -x "$venv/bin/moto_server" ] || die "$venv/bin/moto_server missing after install"
    echo "$MOTO_PIN" >"$venv/.installed"
    exec 9>&-
}

# Prints a TCP port that was free a moment ago (the bind race is handled by retrying).
free_port() {
    "$venv/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' </dev/null
}

answers() {
    "$venv/bin/python" - "$1" </dev/null >/dev/null 2>&1 <<'PY'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=2).read()
PY
}

start() {
    local portfile=$1 watch=${2:-}
    [ -n "$portfile" ] || usage
    if [ -n "$watch" ]; then
        [[ "$watch" =~ ^[0-9]+$ ]] || die "WATCH_PID must be a pid, got '$watch'"
        kill -0 "$watch" 2>/dev/null || die "WATCH_PID $watch is not running"
    fi
    install
    mkdir -p "$(dirname "$portfile")"
    rm -f "$portfile" "$portfile.pid"
    local log="$portfile.log" attempt port url pid i
    for attempt in 1 2 3; do
        port=$(free_port) || die "cannot find a free port"
        url="http://127.0.0.1:$port"
        # setsid: its own session, so a signal to the caller's process group is not what stops it
        # (stop, or the watcher, does). All three standard streams are detached from ours.
        setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$log" 2>&1 &
        pid=$!
        for i in $(seq 1 120); do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "s3-server.sh: moto_server exited during startup (attempt $attempt):" >&2
                tail -n 20 "$log" >&2 || true
                pid=
                break
            fi
            if answers "$url"; then
                break
            fi
            sleep 0.25
        done
        if [ -n "$pid" ] && answers "$url"; then
            echo "$pid" >"$portfile.pid"
            if [ -n "$watch" ]; then
                # Stops the server once the watched process is gone (e.g. the test binary that
                # started it), so an interrupted test run leaves nothing behind.
                (
                    while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
                    kill "$pid" 2>/dev/null || true
                    rm -f "$portfile" "$portfile.pid"
                ) </dev/null >/dev/null 2>&1 &
            fi
            # Written last and atomically: a reader never sees a partial URL or a dead server.
            echo "$url" >"$portfile.tmp"
            mv -f "$portfile.tmp" "$portfile"
            echo "s3-server.sh: moto ($MOTO_PIN) serving $url, pid $pid" >&2
            return 0
        fi
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            echo "s3-server.sh: moto_server did not answer on $url within 30 s (attempt $attempt)" >&2
            tail -n 20 "$log" >&2 || true
        fi
    done
    die "could not start moto_server (log: $log)"
}

stop() {
    local portfile=$1 pid i
    [ -n "$portfile" ] || usage
    if [ ! -f "$portfile.pid" ]; then
        echo "s3-server.sh: no $portfile.pid; nothing to stop" >&2
        rm -f "$portfile"
        return 0
    fi
    pid=$(cat "$portfile.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || die "bad pid in $portfile.pid: '$pid'"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$portfile" "$portfile.pid"
    echo "s3-server.sh: stopped pid $pid" >&2
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" "${3:-}" ;;
    stop) stop "${2:-}" ;;
    *) usage ;;
esac
