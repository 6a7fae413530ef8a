# Shell helpers shared by bench/run.sh and bench/balance.sh (sourced).

running() {   # pid: alive and not a zombie waiting to be reaped
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s:0:1}" != Z ]
}

stop_pid() {
    local pid=$1 i kids
    running "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        # shellcheck disable=SC2086
        [ -n "$kids" ] && kill -KILL $kids 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
