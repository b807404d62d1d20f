#!/usr/bin/env bash
# Adds Switchboard as a target to the peer benchmark (../shared/bench-peers: LiteLLM, Portkey
# and direct calls against one fake upstream), so all of them are measured in one run.
#
#   bench/peers.sh                 # bench.py defaults (2 rounds, ~10 min with both peers),
#                                  # then bench/peers_targets.py: issue 11's targets in one table
#   bench/peers.sh --quick         # any further arguments go to bench.py
#   bench/peers.sh --rounds 3 --tests c1,conc,stream
#
# Start the peers first if you want them in the run (otherwise only direct + switchboard run):
#   ../shared/bench-peers/peers.sh install && ../shared/bench-peers/peers.sh start
# If their mock upstream (127.0.0.1:$MOCK_PORT) is not running, this script starts one itself.
#
# It starts Switchboard on loopback (ephemeral ports, temporary data dir, random master key)
# pointed at the mock, passes it to bench.py with --add/--add-header/--add-pid, and stops what it
# started on exit. Nothing under ../shared is modified: results go to bench/results/peers/.
#
# Env: PEERS_BENCH (default <repo>/../shared/bench-peers, else beside the main checkout), PEERS_DIR (/tmp/peers),
#      MOCK_PORT (9100), LITELLM_PORT (4000), PORTKEY_PORT (8787), PYTHON (<repo>/.venv/bin/python),
#      SWITCHBOARD_CMD (default: the venv's `switchboard` script), PEERS_OUT (bench/results/peers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [ -z "${PEERS_BENCH:-}" ]; then
  # In a git worktree (e.g. /work/wt/x) ../shared is beside the main checkout, not beside REPO.
  MAIN_REPO="$(dirname "$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir 2>/dev/null \
    || echo "$REPO/.git")")"
  PEERS_BENCH="$REPO/../shared/bench-peers"
  [ -f "$PEERS_BENCH/bench.py" ] || PEERS_BENCH="$MAIN_REPO/../shared/bench-peers"
fi
PEERS_DIR="${PEERS_DIR:-/tmp/peers}"
MOCK_PORT="${MOCK_PORT:-9100}"
LITELLM_PORT="${LITELLM_PORT:-4000}"
PORTKEY_PORT="${PORTKEY_PORT:-8787}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PEERS_OUT="${PEERS_OUT:-$HERE/results/peers}"
if [ -z "${SWITCHBOARD_CMD:-}" ]; then
  if [ -x "$(dirname "$PYTHON")/switchboard" ]; then SWITCHBOARD_CMD="$(dirname "$PYTHON")/switchboard"
  else SWITCHBOARD_CMD="$PYTHON -m server"; fi
fi

log() { echo "[bench/peers] $*" >&2; }
up() { curl -s -o /dev/null --max-time 1 "$1"; }

[ -f "$PEERS_BENCH/bench.py" ] || { log "no bench.py in $PEERS_BENCH (set PEERS_BENCH)"; exit 2; }
command -v wrk >/dev/null || { log "wrk not found: apt-get install -y wrk"; exit 2; }
command -v curl >/dev/null || { log "curl not found: apt-get install -y curl"; exit 2; }

WORK="$(mktemp -d /tmp/switchboard-peers-XXXXXX)"
STARTED=()   # PIDs (each its own process group via setsid) that this script started
cleanup() {
  local pid i
  for pid in "${STARTED[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The peers' mock upstream: reuse a running one, else start it with our Python.
UPSTREAM_PIDFILE="$PEERS_DIR/run/mock.pid"
if up "http://127.0.0.1:$MOCK_PORT/health"; then
  log "using the mock upstream already on 127.0.0.1:$MOCK_PORT"
else
  setsid "$PYTHON" "$PEERS_BENCH/mock_upstream.py" --host 127.0.0.1 --port "$MOCK_PORT" \
    >"$WORK/mock.log" 2>&1 </dev/null &
  STARTED+=("$!")
  echo "$!" >"$WORK/mock.pid"
  UPSTREAM_PIDFILE="$WORK/mock.pid"
  for ((i = 0; i < 80; i++)); do up "http://127.0.0.1:$MOCK_PORT/health" && break; sleep 0.25; done
  up "http://127.0.0.1:$MOCK_PORT/health" || { log "mock did not start"; cat "$WORK/mock.log"; exit 1; }
  log "started the mock upstream on 127.0.0.1:$MOCK_PORT (pid $!)"
fi

# 2. Switchboard on ephemeral loopback ports; it writes the bound ports to <data-dir>/ports.json.
KEY="sk-bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
cat >"$WORK/switchboard.yaml" <<'YAML'
routes:
  - name: mock-model
    strategy: ordered
    deployments: ["openai/mock-model"]
YAML
mkdir -p "$WORK/data"
# shellcheck disable=SC2086  # SWITCHBOARD_CMD may be "python -m server"
env -u SWITCHBOARD_CONFIG -u SWITCHBOARD_DATA_DIR \
  OPENAI_API_KEY=dummy OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" SWITCHBOARD_MASTER_KEY="$KEY" \
  setsid $SWITCHBOARD_CMD serve --config "$WORK/switchboard.yaml" --host 127.0.0.1 \
  --http-port 0 --grpc-port 0 --data-dir "$WORK/data" >"$WORK/switchboard.log" 2>&1 </dev/null &
GW_PID=$!
STARTED+=("$GW_PID")
HTTP_PORT=""
for ((i = 0; i < 120; i++)); do
  kill -0 "$GW_PID" 2>/dev/null || { log "switchboard exited:"; tail -20 "$WORK/switchboard.log"; exit 1; }
  if [ -s "$WORK/data/ports.json" ]; then
    HTTP_PORT="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"] or "")' \
      "$WORK/data/ports.json")"
    [ -n "$HTTP_PORT" ] && up "http://127.0.0.1:$HTTP_PORT/healthz" && break
  fi
  sleep 0.25
done
[ -n "$HTTP_PORT" ] && up "http://127.0.0.1:$HTTP_PORT/healthz" \
  || { log "switchboard not ready:"; tail -20 "$WORK/switchboard.log"; exit 1; }
log "switchboard pid $GW_PID on http://127.0.0.1:$HTTP_PORT"

# 3. Whichever peers are running join the run.
ONLY="direct"
up "http://127.0.0.1:$LITELLM_PORT/health/liveliness" && ONLY="$ONLY,litellm" \
  || log "litellm not running on :$LITELLM_PORT (../shared/bench-peers/peers.sh start) - skipped"
up "http://127.0.0.1:$PORTKEY_PORT/" && ONLY="$ONLY,portkey" \
  || log "portkey not running on :$PORTKEY_PORT (../shared/bench-peers/peers.sh start) - skipped"
ONLY="$ONLY,switchboard"

# bench.py's targets.json has the mock at :9100; a copy follows MOCK_PORT and our mock's pidfile.
"$PYTHON" - "$PEERS_BENCH/targets.json" "$WORK/targets.json" "$MOCK_PORT" "$UPSTREAM_PIDFILE" <<'PY'
import json, sys
src, dst, port, pidfile = sys.argv[1:]
spec = json.load(open(src))
for t in spec["targets"]:
    if t["name"] == "direct":
        t["url"] = f"http://127.0.0.1:{port}/v1/chat/completions"
        t["pidfile"] = pidfile
json.dump(spec, open(dst, "w"), indent=1)
PY

mkdir -p "$PEERS_OUT"
log "bench.py --only $ONLY $*"
"$PYTHON" "$PEERS_BENCH/bench.py" --targets-file "$WORK/targets.json" --only "$ONLY" \
  --add "switchboard=http://127.0.0.1:$HTTP_PORT/v1/chat/completions" \
  --add-header "switchboard:Authorization: Bearer $KEY" \
  --add-pid "switchboard=$GW_PID" \
  --upstream-pidfile "$UPSTREAM_PIDFILE" \
  --out "$PEERS_OUT" "$@"

# 4. Issue 11's targets as one table from this run's raw JSON (the newest in $PEERS_OUT).
RAW="$(ls -t "$PEERS_OUT"/raw-*.json 2>/dev/null | head -n1)"
[ -n "$RAW" ] && "$PYTHON" "$HERE/peers_targets.py" "$RAW" | tee "${RAW%.json}-targets.md"
