#!/usr/bin/env bash
# Local Apache Kafka 4.x broker (KRaft combined mode) on 127.0.0.1:9092, no containers.
# The broker jars are assembled from Maven Central by deploy/local/kafka/pom.xml.
#
# Usage: deploy/local/kafka.sh {install|up|down|status|wait}
#
#   install  copy the pinned Kafka jars into deploy/local/.kafka/libs (mvn, once)
#   up       install if needed, format storage once, start the broker in the
#            background and wait until it answers a metadata request
#   down     stop the broker started by this script (SIGTERM, then SIGKILL after 30 s)
#   status   say whether a broker answers on the bootstrap address; exit 0 if it does
#   wait     wait (up to KAFKA_WAIT_TIMEOUT s, default 90) until the broker answers
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  use this external broker; up/down do nothing
#   KAFKA_PORT               client port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT    controller port on 127.0.0.1 (default 9093)
#   KAFKA_DATA_DIR           data directory (default deploy/local/.kafka/data)
#   KAFKA_HEAP_OPTS          JVM heap (default "-Xms512m -Xmx512m")
#   KAFKA_WAIT_TIMEOUT       seconds to wait for the broker (default 90)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
KAFKA_CONF_DIR="$SCRIPT_DIR/kafka"
KAFKA_HOME_DIR="$SCRIPT_DIR/.kafka"
KAFKA_LIBS_DIR="$KAFKA_HOME_DIR/libs"
KAFKA_POM="$KAFKA_CONF_DIR/pom.xml"
INSTALL_STAMP="$KAFKA_LIBS_DIR/.installed"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
LOCAL_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
WAIT_TIMEOUT="${KAFKA_WAIT_TIMEOUT:-90}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"

log() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------- paths
resolve_data_dir() {
    local d="${KAFKA_DATA_DIR:-$KAFKA_HOME_DIR/data}"
    mkdir -p "$d"
    DATA_DIR="$(cd "$d" && pwd -P)"
    LOG_DIRS="$DATA_DIR/kraft-logs"
    BROKER_LOG_DIR="$DATA_DIR/logs"
    RUNTIME_PROPS="$DATA_DIR/server.properties"
    PID_FILE="$DATA_DIR/kafka.pid"
    CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
    OUT_FILE="$BROKER_LOG_DIR/kafka.out"
}

# --------------------------------------------------------------------------- prerequisites
require_java() {
    command -v java >/dev/null 2>&1 \
        || die "java not found: install OpenJDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
    local ver major
    ver="$(java -version 2>&1 | awk -F'"' '/version/ && !v {v=$2} END {print v}')"
    major="${ver%%.*}"
    [[ "$major" == 1 ]] && major="$(echo "$ver" | cut -d. -f2)"
    [[ "$major" =~ ^[0-9]+$ ]] || die "cannot parse java version '$ver': install OpenJDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
    ((major >= 17)) \
        || die "java $ver is too old: install OpenJDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
}

require_mvn() {
    command -v mvn >/dev/null 2>&1 \
        || die "mvn not found: install Maven 3.8+ (Debian/Ubuntu: apt-get install maven)"
}

pom_hash() { sha256sum "$KAFKA_POM" | awk '{print $1}'; }

is_installed() {
    [[ -f "$INSTALL_STAMP" ]] && [[ "$(cat "$INSTALL_STAMP")" == "$(pom_hash)" ]] \
        && compgen -G "$KAFKA_LIBS_DIR/kafka_2.13-*.jar" >/dev/null
}

cmd_install() {
    require_java
    if is_installed; then
        log "Kafka libs already installed in $KAFKA_LIBS_DIR"
        return 0
    fi
    require_mvn
    log "installing Kafka libs from Maven Central into $KAFKA_LIBS_DIR (first time only) ..."
    local t0=$SECONDS
    rm -rf "$KAFKA_LIBS_DIR"
    mkdir -p "$KAFKA_LIBS_DIR"
    local mvn_log="$KAFKA_HOME_DIR/install.log"
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" package \
        "-Dkafka.libs.dir=$KAFKA_LIBS_DIR" >"$mvn_log" 2>&1; then
        rm -rf "$KAFKA_LIBS_DIR"
        tail -n 30 "$mvn_log" >&2
        die "mvn failed to fetch the Kafka jars (is Maven Central reachable? full log: $mvn_log)"
    fi
    compgen -G "$KAFKA_LIBS_DIR/kafka_2.13-*.jar" >/dev/null \
        || die "mvn ran but no kafka_2.13 jar landed in $KAFKA_LIBS_DIR"
    pom_hash >"$INSTALL_STAMP"
    log "installed $(find "$KAFKA_LIBS_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

kafka_java() { java -cp "$KAFKA_LIBS_DIR/*" "$@"; }

# --------------------------------------------------------------------------- readiness probe
# Succeeds when the broker at host:port answers a Metadata request listing >= 1 live broker
# (not just an open port). Uses python3 (raw Kafka protocol, ~50 ms) or falls back to
# org.apache.kafka.tools.BrokerApiVersionsCommand.
probe() {
    local bootstrap="$1" host port
    bootstrap="${bootstrap%%,*}"
    bootstrap="${bootstrap#*://}"
    host="${bootstrap%:*}"
    port="${bootstrap##*:}"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$host" "$port" <<'PY' >/dev/null 2>&1
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port), timeout=3)
sock.settimeout(3)

def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf

def request(api_key, version, corr, body, flexible=False):
    client = b"kafka.sh"
    hdr = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    if flexible:
        hdr += b"\x00"  # empty tagged fields
    msg = hdr + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(4))[0]
    data = recv_exact(size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise ValueError("correlation id mismatch")
    return data[4:]

# ApiVersions v0: find the supported Metadata (api key 3) range.
resp = request(18, 0, 1, b"")
err, n = struct.unpack(">hi", resp[:6])
if err:
    raise SystemExit(2)
lo = hi = None
for i in range(n):
    key, kmin, kmax = struct.unpack(">hhh", resp[6 + 6 * i:12 + 6 * i])
    if key == 3:
        lo, hi = kmin, kmax
if lo is None:
    raise SystemExit(3)

if lo <= 8:
    v = max(lo, 1, min(hi, 8))
    body = struct.pack(">i", 0)  # empty topic list
    if v >= 4:
        body += b"\x00"  # allow_auto_topic_creation
    if v >= 8:
        body += b"\x00\x00"  # include cluster/topic authorized operations
    resp = request(3, v, 2, body)
    off = 4 if v >= 3 else 0  # throttle_time_ms
    brokers = struct.unpack(">i", resp[off:off + 4])[0]
else:
    v = lo  # flexible versions (>= 9)
    body = b"\x01" + b"\x00"  # empty compact topic array, allow_auto_topic_creation
    if v <= 10:
        body += b"\x00"  # include_cluster_authorized_operations
    body += b"\x00" + b"\x00"  # include_topic_authorized_operations, tagged fields
    resp = request(3, v, 2, body, flexible=True)
    # response header tagged fields (assume none: 1 byte), throttle_time_ms, compact array
    brokers = resp[5] - 1
raise SystemExit(0 if brokers >= 1 else 4)
PY
    else
        compgen -G "$KAFKA_LIBS_DIR/kafka-tools-*.jar" >/dev/null || return 1
        timeout 30 java -cp "$KAFKA_LIBS_DIR/*" \
            -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.yaml" -Dkafka.logs.dir=/tmp \
            org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "$host:$port" >/dev/null 2>&1
    fi
}

bootstrap_address() { echo "${KAFKA_BOOTSTRAP_SERVERS:-$LOCAL_BOOTSTRAP}"; }

# pid of the broker started by this script for $DATA_DIR, if it is alive
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *" kafka.Kafka "* ]] || return 1
    echo "$pid"
}

tail_broker_log() {
    if [[ -s "$OUT_FILE" ]] && grep -qE ' (ERROR|FATAL) |^Caused by' "$OUT_FILE"; then
        echo "----- errors in $OUT_FILE -----" >&2
        grep -E ' (ERROR|FATAL) |^Caused by' "$OUT_FILE" | tail -n 15 >&2 || true
    fi
    local f="$BROKER_LOG_DIR/server.log"
    [[ -s "$f" ]] || f="$OUT_FILE"
    if [[ -s "$f" ]]; then
        echo "----- last 25 lines of $f -----" >&2
        tail -n 25 "$f" >&2
    fi
}

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# wait_ready <timeout> [pid]: 0 when the broker answers; 1 on timeout or if pid died
wait_ready() {
    local timeout="$1" pid="${2:-}" deadline=$((SECONDS + $1))
    local bootstrap
    bootstrap="$(bootstrap_address)"
    while ((SECONDS < deadline)); do
        if probe "$bootstrap"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 0.5
    done
    return 1
}

# --------------------------------------------------------------------------- storage
write_runtime_props() {
    local line
    mkdir -p "$LOG_DIRS" "$BROKER_LOG_DIR"
    : >"$RUNTIME_PROPS.tmp"
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line//@KAFKA_LOG_DIRS@/"$LOG_DIRS"}"
        line="${line//@KAFKA_PORT@/"$KAFKA_PORT"}"
        line="${line//@KAFKA_CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}"
        printf '%s\n' "$line" >>"$RUNTIME_PROPS.tmp"
    done <"$KAFKA_CONF_DIR/server.properties"
    mv -f "$RUNTIME_PROPS.tmp" "$RUNTIME_PROPS"
}

format_storage_once() {
    if [[ -f "$LOG_DIRS/meta.properties" ]]; then
        return 0
    fi
    if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
        kafka_java -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.yaml" \
            -Dkafka.logs.dir="$BROKER_LOG_DIR" \
            kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 | tr -d '[:space:]' \
            >"$CLUSTER_ID_FILE.tmp"
        [[ -s "$CLUSTER_ID_FILE.tmp" ]] || die "StorageTool random-uuid produced no cluster id"
        mv -f "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
    fi
    local cid
    cid="$(cat "$CLUSTER_ID_FILE")"
    log "formatting storage in $LOG_DIRS (cluster id $cid)"
    kafka_java -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.yaml" \
        -Dkafka.logs.dir="$BROKER_LOG_DIR" \
        kafka.tools.StorageTool format --standalone --ignore-formatted \
        -t "$cid" -c "$RUNTIME_PROPS" >>"$BROKER_LOG_DIR/format.log" 2>&1 \
        || { tail -n 20 "$BROKER_LOG_DIR/format.log" >&2; die "kafka storage format failed (see $BROKER_LOG_DIR/format.log)"; }
}

# --------------------------------------------------------------------------- commands
with_lock() {
    # Serialise concurrent up/down on the same data dir (best effort if flock is missing).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DATA_DIR/.lock"
        flock -w 120 9 || die "could not lock $DATA_DIR/.lock"
    fi
}

cmd_up() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set: using that external broker, not starting a local one"
        return 0
    fi
    require_java
    resolve_data_dir
    with_lock
    if probe "$LOCAL_BOOTSTRAP"; then
        log "a Kafka broker already answers on $LOCAL_BOOTSTRAP; nothing to do"
        return 0
    fi
    local pid
    if pid="$(running_pid)"; then
        log "broker process $pid is already running (not answering yet); waiting"
        wait_ready "$WAIT_TIMEOUT" "$pid" && { log "Kafka broker up on $LOCAL_BOOTSTRAP"; return 0; }
        tail_broker_log
        die "broker process $pid did not answer on $LOCAL_BOOTSTRAP within ${WAIT_TIMEOUT}s"
    fi
    if port_open "$LOCAL_BOOTSTRAP"; then
        die "something is listening on $LOCAL_BOOTSTRAP but does not answer as a Kafka broker; free the port (e.g. ss -ltnp 'sport = :$KAFKA_PORT') or set KAFKA_BOOTSTRAP_SERVERS"
    fi
    cmd_install

    write_runtime_props
    format_storage_once

    local t0 t1
    t0="$(date +%s.%N)"
    log "starting Kafka broker (data: $DATA_DIR, log: $OUT_FILE)"
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # shellcheck disable=SC2086
    nohup "${launcher[@]}" java $HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.yaml" \
        -Dkafka.logs.dir="$BROKER_LOG_DIR" \
        -cp "$KAFKA_LIBS_DIR/*" kafka.Kafka "$RUNTIME_PROPS" \
        >>"$OUT_FILE" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local rc=0
    wait_ready "$WAIT_TIMEOUT" "$pid" || rc=$?
    if ((rc != 0)); then
        tail_broker_log
        if ((rc == 2)); then
            rm -f "$PID_FILE"
            die "Kafka broker exited during startup (see $OUT_FILE and $BROKER_LOG_DIR/server.log)"
        fi
        die "Kafka broker (pid $pid) did not answer a metadata request on $LOCAL_BOOTSTRAP within ${WAIT_TIMEOUT}s; it is left running, stop it with: $0 down"
    fi
    t1="$(date +%s.%N)"
    log "Kafka broker up on $LOCAL_BOOTSTRAP (pid $pid), started in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
}

cmd_down() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set: external broker in use, nothing to stop"
        return 0
    fi
    resolve_data_dir
    with_lock
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        if probe "$LOCAL_BOOTSTRAP"; then
            log "no broker started from $DATA_DIR is running, but something answers on $LOCAL_BOOTSTRAP (not stopping it)"
        else
            log "Kafka broker is not running"
        fi
        return 0
    fi
    log "stopping Kafka broker (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker did not exit within 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$PID_FILE"
    log "Kafka broker stopped"
}

cmd_status() {
    local bootstrap
    bootstrap="$(bootstrap_address)"
    if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        resolve_data_dir
        local pid
        if pid="$(running_pid)"; then
            log "local broker process running (pid $pid, data $DATA_DIR)"
        else
            log "no local broker process for data dir $DATA_DIR"
        fi
    fi
    if probe "$bootstrap"; then
        log "Kafka broker answers on $bootstrap"
        return 0
    fi
    log "no Kafka broker answers on $bootstrap"
    return 1
}

cmd_wait() {
    local bootstrap
    bootstrap="$(bootstrap_address)"
    if wait_ready "$WAIT_TIMEOUT"; then
        log "Kafka broker answers on $bootstrap"
        return 0
    fi
    if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        resolve_data_dir
        tail_broker_log
    fi
    die "no Kafka broker answered on $bootstrap within ${WAIT_TIMEOUT}s"
}

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        wait) cmd_wait ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
