# Shared by the load scripts in benches/ (sourced after they set $root): the binaries to run,
# free ports, and waiting for a line in a process's output.

# Sets $bin to a directory holding callml and the examples named (`bench_binaries bench_app
# rtp_probe`): CALLML_BIN_DIR when set (e.g. copies of an earlier build, for before/after runs
# in one session), otherwise the release build, made here.
bench_binaries() {
  if [ -n "${CALLML_BIN_DIR:-}" ]; then
    bin=$CALLML_BIN_DIR
    return
  fi
  local examples=()
  for example in "$@"; do examples+=(--example "$example"); done
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin callml "${examples[@]}"
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin="$target_dir/release"
}

# A port free for UDP and TCP on 127.0.0.1, drawn above the kernel's ephemeral range: a port
# from that range, released here, was now and then taken (by an outgoing connection or a
# socket bound to port 0) before the process it was meant for bound it.
free_port() {
  python3 - <<'PY'
import random, socket
while True:
    port = random.randrange(61000, 65500)
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", port)); s.close()
    except OSError:
        continue
    print(port); break
PY
}

# wait_line FILE PATTERN: waits up to 20 s for PATTERN in FILE; otherwise prints FILE and exits.
wait_line() {
  for _ in $(seq 200); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timeout waiting for $2 in $1" >&2
  cat "$1" >&2
  exit 1
}
