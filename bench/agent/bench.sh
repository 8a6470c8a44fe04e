#!/bin/sh
# berth-agent figures: idle RSS after startup, and the latency of GET /_ping and
# GET /version over mutual TLS with keep-alive (one curl, one connection, N requests).
#
#   bench/agent/bench.sh [path/to/berth-agent] [N]
#
# Needs openssl and curl. Runs the agent on 127.0.0.1 on a free port in a temp dir.
set -eu

AGENT=${1:-build/agent/berth-agent}
N=${2:-200}
[ -x "$AGENT" ] || { echo "bench.sh: no berth-agent at $AGENT (pass its path)" >&2; exit 1; }
AGENT=$(cd "$(dirname "$AGENT")" && pwd)/$(basename "$AGENT")

DIR=$(mktemp -d /tmp/berth-agent-bench.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
cd "$DIR"

# Test PKI: CA, server cert (SAN 127.0.0.1, serverAuth), client cert (clientAuth).
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -sha256 -days 1 -subj /CN=bench-ca -keyout ca-key.pem -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
for who in server client; do
  openssl req -new $ec -subj /CN=bench-$who -keyout $who-key.pem -out $who.csr 2>/dev/null
done
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -sha256 -days 1 -in $who.csr -CA ca.pem -CAkey ca-key.pem \
    -set_serial "0x$(openssl rand -hex 8)" -extfile $who.ext -out $who.pem 2>/dev/null
done

cat > agent.json <<JSON
{"listen":"127.0.0.1","port":0,
 "tls":{"ca":"$DIR/ca.pem","cert":"$DIR/server.pem","key":"$DIR/server-key.pem"},
 "log_file":"$DIR/agent.log","pid_file":"$DIR/agent.pid","data_root":"$DIR/data","manage_network":false}
JSON
"$AGENT" --config agent.json --daemon     # returns once the agent listens
PID=$(cat agent.pid)
PORT=$(sed -n 's/.*started: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' agent.log | head -n 1)
sleep 0.5
rss() { awk '/^VmRSS/ {print $2 " " $3}' "/proc/$PID/status"; }
IDLE_RSS=$(rss)

tls="--cacert ca.pem --cert client.pem --key client-key.pem"

# One curl, one keep-alive connection, N+1 requests; the first (with the handshake) is dropped.
keepalive() {
  i=0
  : > curl.cfg
  while [ $i -le "$N" ]; do
    printf 'url = "https://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$PORT" "$1" >> curl.cfg
    i=$((i + 1))
  done
  curl -s $tls -K curl.cfg -w '%{time_total} %{num_connects} %{http_code}\n' > times.txt
  connects=$(awk '{c += $2} END {print c}' times.txt)
  bad=$(awk '$3 != 200' times.txt | wc -l)
  tail -n +2 times.txt | awk '{print $1 * 1000}' | sort -n > sorted.txt
  awk -v path="$1" -v conns="$connects" -v bad="$bad" '
    { v[NR] = $1 }
    END {
      printf "GET %-9s n=%d  median %.3f ms  p90 %.3f ms  p99 %.3f ms  (connections: %d, non-200: %d)\n",
        path, NR, v[int(NR * 0.5 + 0.5)], v[int(NR * 0.9 + 0.5)], v[int(NR * 0.99 + 0.5)], conns, bad
    }' sorted.txt
}

# New connection per request (TCP + mutual TLS handshake + request), 20 curls.
fresh() {
  : > fresh.txt
  for _ in $(seq 20); do
    curl -s $tls -o /dev/null -w '%{time_total}\n' "https://127.0.0.1:$PORT/_ping" >> fresh.txt
  done
  awk '{print $1 * 1000}' fresh.txt | sort -n | awk '{ v[NR] = $1 } END {
    printf "new connection + GET /_ping  n=%d  median %.3f ms\n", NR, v[int(NR * 0.5 + 0.5)] }'
}

echo "berth-agent $("$AGENT" --version | cut -d' ' -f2), pid $PID, $(file -bL "$AGENT" | grep -o 'statically linked' || echo 'NOT statically linked')"
echo "binary size: $(stat -c %s "$AGENT") bytes ($(strip -o stripped.bin "$AGENT" && stat -c %s stripped.bin) stripped)"
echo "idle RSS after startup: $IDLE_RSS"
keepalive /_ping
keepalive /version
fresh
echo "RSS after the run: $(rss)"
kill -TERM "$PID"
for _ in $(seq 50); do [ -e agent.pid ] || break; sleep 0.1; done
[ -e agent.pid ] && echo "warning: pidfile still there after SIGTERM" >&2
PID=
