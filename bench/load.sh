#!/usr/bin/env bash
# The load benchmark (BENCHMARKS.md): builds the binaries, starts the PortOne sandbox answering in
# 20 ms, the service on the real PostgreSQL and Redis, then the load generator, and prints one
# table and the ratios of each figure to its floor measured in the same run (loadgen's own HTTP
# client straight at the sandbox; the record's statement alone by pgbench, paced as Verify; the
# bare indexed query). Everything runs on this machine; it needs psql and pgbench.
#
#   bench/load.sh            full run, release build (~2 minutes of load)
#   bench/load.sh --smoke    every scenario for a moment on the debug build: CI runs this to keep
#                            the benchmark working; its figures mean nothing
#
# Environment: BENCH_PG_URL (a PostgreSQL server URL whose database is used to create and drop
# `cs_bench_load_<pid>`, one per run so two runs on one server never share it; default postgres://root@127.0.0.1:5432/test), BENCH_REDIS_URL
# (default redis://127.0.0.1:6379; the service's token key lives there during the run),
# BENCH_PERF_OUT (a file: `perf record` the service through the 200-caller Verify phase; build
# with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for symbols with lines).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release duration=15s warmup=3s callers=200 few_callers=50 dup_callers=16 crowd=1000 persons=2000
certifications=5000 overload_limit=64 overload_callers=256 signups=10000 warmup_signups=1000
if [ "${1:-}" = --smoke ]; then
  profile=debug duration=1s warmup=300ms callers=20 few_callers=5 dup_callers=4 crowd=100 persons=40
  certifications=200 overload_limit=4 overload_callers=16 signups=40 warmup_signups=10
fi
latency_ms=20
pg_url=${BENCH_PG_URL:-postgres://root@127.0.0.1:5432/test}
redis_url=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
bench_db=cs_bench_load_$$
db_url="${pg_url%/*}/$bench_db"

if [ "$profile" = release ]; then
  cargo build --quiet --locked --release -p certification-service -p loadgen --bins
else
  cargo build --quiet --locked -p certification-service -p loadgen --bins
fi
bin=${CARGO_TARGET_DIR:-target}/$profile
work=$(mktemp -d)
results=$work/results
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg_url" -qc "drop database if exists $bench_db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql "$pg_url" -qc "drop database if exists $bench_db" -c "create database $bench_db" >/dev/null

sandbox_port=$(free_port)
"$bin/portone-sandbox" --listen "127.0.0.1:$sandbox_port" >"$work/sandbox.log" 2>&1 &
pids+=($!)
sandbox_url="http://127.0.0.1:$sandbox_port"
for _ in $(seq 1 100); do curl -sf "$sandbox_url/__sandbox/stats" >/dev/null && break; sleep 0.05; done
curl -sf -X POST "$sandbox_url/__sandbox/latency" -H 'content-type: application/json' \
  -d "{\"millis\":$latency_ms}" >/dev/null

ci_index_key=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
encryption_key="bench:$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"
audit_key=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')

# start_service NAME MAX_IN_FLIGHT: the service on PostgreSQL + Redis, waited for until SERVING.
# The load is one caller at thousands of calls a second: its per-minute bounds are lifted, so the
# figures measure the service, not SESSIONS_PER_MINUTE and LOOKUPS_PER_MINUTE.
start_service() {
  local port
  port=$(free_port)
  GRPC_LISTEN_ADDR="127.0.0.1:$port" METRICS_LISTEN_ADDR="127.0.0.1:$(free_port)" \
    DATABASE_URL="$db_url" REDIS_URL="$redis_url" PORTONE_BASE_URL="$sandbox_url" \
    PORTONE_IMP_KEY=sandbox_imp_key PORTONE_IMP_SECRET=sandbox_imp_secret \
    CI_INDEX_KEY="$ci_index_key" CI_ENCRYPTION_KEYS="$encryption_key" AUDIT_KEY="$audit_key" MAX_IN_FLIGHT="$2" \
    SESSIONS_PER_MINUTE=1000000000 LOOKUPS_PER_MINUTE=1000000000 SHUTDOWN_DRAIN_DELAY=0s ALLOW_UNAUTHENTICATED=true REQUIRE_SESSION=false "$bin/certification-service" serve >"$work/$1.log" 2>&1 &
  pids+=($!)
  service_pid=$!
  service_addr="127.0.0.1:$port"
  for _ in $(seq 1 200); do
    "$bin/certification-service" health --addr "$service_addr" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the service did not become SERVING; its log:" >&2
  cat "$work/$1.log" >&2
  return 1
}

start_service main 2000
main_pid=$service_pid main_addr=$service_addr
sleep 1

load="$bin/loadgen"
common=(--addr "http://$main_addr" --duration "$duration" --warmup "$warmup" --results "$results")
direct=(--sandbox-url "$sandbox_url" --duration "$duration" --warmup "$warmup" --results "$results")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); PortOne sandbox latency ${latency_ms} ms;" \
  "$profile build; PostgreSQL + Redis"
"$load" header
"$load" rss --pid "$main_pid" --label "service idle, after start" --key rss_idle_mib --results "$results"
# Each floor right before the figure divided by it, so drift on the machine falls on both.
"$load" direct "${direct[@]}" --concurrency 1 --key direct_one --label "direct GET at the sandbox"
"$load" verify "${common[@]}" --sandbox-url "$sandbox_url" --concurrency 1 --key verify_one \
  --certifications "$certifications" --pid "$main_pid" --label "Verify (warm token), 1 caller"
# The record's durable commit alone, paced as that Verify was: the rest of its floor.
"$load" commit --database-url "$db_url" --rate-key verify_one_rate --duration "$duration" \
  --warmup "$warmup" --results "$results" --key commit_one
"$load" direct "${direct[@]}" --concurrency "$few_callers" --key direct_few --label "direct GET at the sandbox"
"$load" verify "${common[@]}" --sandbox-url "$sandbox_url" --concurrency "$few_callers" --key verify_few \
  --certifications "$certifications" --pid "$main_pid" --label "Verify (warm token)"
"$load" signup "${common[@]}" --sandbox-url "$sandbox_url" --concurrency "$few_callers" --key signup_few \
  --signups "$signups" --warmup-signups "$warmup_signups" --pid "$main_pid" --label "signup: redeem + bind"
perf_pid=
if [ -n "${BENCH_PERF_OUT:-}" ]; then
  perf record -q -F 499 -g -o "$BENCH_PERF_OUT" -p "$main_pid" 2>/dev/null &
  perf_pid=$!
fi
"$load" verify "${common[@]}" --sandbox-url "$sandbox_url" --concurrency "$callers" --key verify_many \
  --certifications "$certifications" --pid "$main_pid" --label "Verify (warm token)"
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
"$load" duplicate "${common[@]}" --key duplicate --sandbox-url "$sandbox_url" --concurrency "$dup_callers" \
  --persons "$persons" --database-url "$db_url" --ci-index-key "$ci_index_key"

# Peak memory under a crowd, on a fresh process so the peak is this load's alone.
start_service crowd 2000
sleep 1
"$load" rss --pid "$service_pid" --label "fresh service idle"
"$load" verify --addr "http://$service_addr" --duration "$duration" --warmup "$warmup" \
  --sandbox-url "$sandbox_url" --concurrency "$crowd" --certifications "$certifications" \
  --pid "$service_pid" --label "Verify, $crowd in flight"
"$load" rss --pid "$service_pid" --label "that service after $crowd in flight" \
  --key rss_crowd_mib --results "$results"
kill "$service_pid"

kill "$main_pid"
start_service overload "$overload_limit"
"$load" verify --addr "http://$service_addr" --duration "$duration" --warmup "$warmup" \
  --sandbox-url "$sandbox_url" --concurrency "$overload_callers" --certifications "$certifications" \
  --expect-refusals --label "Verify, MAX_IN_FLIGHT=$overload_limit"

"$load" startup --binary "$bin/certification-service" --runs 5

echo
[ "$profile" = debug ] && echo "(smoke: debug build, a moment per phase, fewer callers than the labels say: the verdicts mean nothing)"
"$load" ratios --results "$results"
