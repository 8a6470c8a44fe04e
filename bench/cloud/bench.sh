#!/usr/bin/env bash
# DigitalOcean driver figures against the fake DigitalOcean API (a test double,
# tests/fakes/digitalocean/fake_do.py; each droplet is a netns SSH host), as root:
#  - API calls per `berth create -d digitalocean` (total, and per operation), and per `berth rm`
#  - time to ready: wall time of `berth create` (API + droplet "new" for 3 polls + provisioning)
#    and of `berth rm`, medians over RUNS
#  - spec violations the fake recorded over the whole run (should be 0)
# The driver polls every 2 s by default (BERTH_CLOUD_POLL_MS changes it), so the create time is
# mostly 3 polls of a "new" droplet; the provisioning itself is about 2 s.
# Usage: bench/cloud/bench.sh [RUNS]   (default 5; BERTH_BUILD_DIR picks the build,
#        BERTH_AGENT_BINARY the agent to upload). Prints one figure per line.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth=${BERTH_BINARY:-$build/cli/berth}
agent=${BERTH_AGENT_BINARY:-$build/agent/berth-agent}
runs=${1:-5}
token=dop_v1_bench0123456789
for f in "$berth" "$agent"; do
  [ -e "$f" ] || { echo "bench: $f is missing (build berth and berth-agent first)" >&2; exit 2; }
done
for tool in python3 jq curl; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (the fake's droplets are netns SSH hosts)" >&2; exit 2; }
"$berth" create --help 2>&1 | grep -q -- --digitalocean-api-url \
  || { echo "bench: this berth has no digitalocean driver" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-cloud-bench-XXXXXX)
export BERTH_STORAGE_PATH="$work/store" HOME="$work/home" DOCKER_CONFIG="$work/home/.docker"
export BERTH_AGENT_BINARY="$agent"
unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT DIGITALOCEAN_ACCESS_TOKEN DIGITALOCEAN_API_URL
mkdir -p "$HOME"
fake_pid=
cleanup() {
  "$berth" rm -f -y bench-do >/dev/null 2>&1 || true
  if [ -n "$fake_pid" ]; then kill -TERM "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ctl() { curl -sS --noproxy '*' -X "$1" "$url/_fake/$2"; }

python3 "$here/tests/fakes/digitalocean/fake_do.py" --port 0 --port-file "$work/port" --token "$token" \
  >/dev/null 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "bench: the fake did not start:" >&2; cat "$work/fake.log" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")"

: >"$work/create_ms"; : >"$work/create_calls"; : >"$work/rm_ms"; : >"$work/rm_calls"
for i in $(seq "$runs"); do
  ctl POST reset >/dev/null
  t0=$(now_ms)
  "$berth" create -q -d digitalocean --digitalocean-api-url "$url" --digitalocean-access-token "$token" bench-do \
    >/dev/null 2>"$work/create.err" || { echo "bench: create failed:" >&2; cat "$work/create.err" >&2; exit 1; }
  echo $(( $(now_ms) - t0 )) >>"$work/create_ms"
  ctl GET state >"$work/state.json"
  jq .total_requests "$work/state.json" >>"$work/create_calls"
  [ "$i" -eq 1 ] && jq -r '.counts | to_entries | sort_by(.key) | map("\(.key)=\(.value)") | join(", ")' \
    "$work/state.json" >"$work/create_breakdown"
  before=$(jq .total_requests "$work/state.json")
  t0=$(now_ms)
  "$berth" rm -f -y bench-do >/dev/null
  echo $(( $(now_ms) - t0 )) >>"$work/rm_ms"
  ctl GET state >"$work/state.json"
  echo $(( $(jq .total_requests "$work/state.json") - before )) >>"$work/rm_calls"
  left=$(jq '(.droplets | length) + (.keys | length)' "$work/state.json")
  [ "$left" -eq 0 ] || { echo "bench: rm left $left resources in the fake" >&2; exit 1; }
done
violations=$(ctl GET violations | jq length)

echo "digitalocean create (fake API, droplet new for 3 polls, poll every ${BERTH_CLOUD_POLL_MS:-2000} ms, + provisioning): median $(median <"$work/create_ms") ms over $runs runs"
echo "digitalocean API calls per create: median $(median <"$work/create_calls") (first run: $(cat "$work/create_breakdown"))"
echo "digitalocean rm: median $(median <"$work/rm_ms") ms, API calls per rm: median $(median <"$work/rm_calls")"
echo "OpenAPI spec violations recorded by the fake: $violations"
