#!/usr/bin/env bash
# Local Apache Kafka 4.x broker (KRaft combined mode) on 127.0.0.1:9092, no containers.
# Clients authenticate with SASL/SCRAM-SHA-512 and are authorised by ACLs (StandardAuthorizer,
# nothing allowed without an ACL); the super user platform-admin is for tooling and tests.
# The broker jars are assembled from Maven Central by deploy/local/kafka/pom.xml.
#
# Usage: deploy/local/kafka.sh {install|up|down|status|wait}
#
#   install  copy the pinned Kafka jars into deploy/local/.kafka/libs (mvn, once)
#   up       install if needed, create the admin's password, format storage once, start the
#            broker in the background, set the admin's SCRAM credential if the broker refuses
#            it (a new data dir, or one formatted before SASL: its data is kept) and wait until
#            it answers a metadata request as the admin. A broker of this data dir that runs
#            without SASL (started by an older checkout) is restarted with it.
#            The other users, topics and ACLs: python -m tools.kafka_access apply.
#   down     stop the broker started by this script (SIGTERM, then SIGKILL after 30 s)
#   status   say whether a broker answers on the bootstrap address; exit 0 if it does
#   wait     wait (up to KAFKA_WAIT_TIMEOUT s, default 180) until the broker answers
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  use this external broker; up/down do nothing (status/wait
#                            authenticate as KAFKA_USERNAME with KAFKA_PASSWORD_FILE if set)
#   KAFKA_PORT               client (SASL) port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT    controller port on 127.0.0.1 (default 9093)
#   KAFKA_DATA_DIR           data directory (default deploy/local/.kafka/data)
#   KAFKA_CREDENTIALS_DIR    development passwords, one file per user (default var/kafka-credentials)
#   KAFKA_HEAP_OPTS          JVM heap (default "-Xms512m -Xmx512m")
#   KAFKA_WAIT_TIMEOUT       seconds to wait for the broker (default 180: a restart loads every partition)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
KAFKA_CONF_DIR="$SCRIPT_DIR/kafka"
KAFKA_HOME_DIR="$SCRIPT_DIR/.kafka"
KAFKA_LIBS_DIR="$KAFKA_HOME_DIR/libs"
KAFKA_POM="$KAFKA_CONF_DIR/pom.xml"
INSTALL_STAMP="$KAFKA_LIBS_DIR/.installed"

PROJECT_DIR="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
WIRE_CLIENT="$KAFKA_CONF_DIR/client.py"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
LOCAL_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
CONTROLLER_ADDRESS="127.0.0.1:$KAFKA_CONTROLLER_PORT"
CREDENTIALS_DIR="${KAFKA_CREDENTIALS_DIR:-$PROJECT_DIR/var/kafka-credentials}"
# The super user (servicekit.access.ADMIN).
ADMIN_USER="platform-admin"
ADMIN_PASSWORD_FILE="$CREDENTIALS_DIR/$ADMIN_USER"
# Probe outcomes (kafka/client.py).
PROBE_PLAINTEXT=10
PROBE_REFUSED=11
WAIT_TIMEOUT="${KAFKA_WAIT_TIMEOUT:-180}"
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
# probe <host:port> [user password-file]: 0 when the broker answers a Metadata request listing a
# live broker (as that user when given), $PROBE_PLAINTEXT when it answers without SASL,
# $PROBE_REFUSED when it refuses the credentials, 1 otherwise. Kafka protocol, ~50 ms.
probe() {
    local bootstrap="$1" user="${2:-}" password_file="${3:-}" host port
    bootstrap="${bootstrap%%,*}"
    bootstrap="${bootstrap#*://}"
    host="${bootstrap%:*}"
    port="${bootstrap##*:}"
    local credentials=()
    if [[ -n "$user" && -r "$password_file" ]]; then
        credentials=(--user "$user" --password-file "$password_file")
    fi
    python3 "$WIRE_CLIENT" probe "$host" "$port" "${credentials[@]}" >/dev/null 2>&1
}

# The probe as the admin for the local broker; for an external one, as KAFKA_USERNAME if given.
probe_bootstrap() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        probe "$KAFKA_BOOTSTRAP_SERVERS" "${KAFKA_USERNAME:-}" "${KAFKA_PASSWORD_FILE:-}"
    else
        probe "$LOCAL_BOOTSTRAP" "$ADMIN_USER" "$ADMIN_PASSWORD_FILE"
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

# wait_ready <timeout> [pid]: 0 when the broker answers; 1 on timeout, 2 if pid died,
# 3 if it answers but refuses the credentials
wait_ready() {
    local timeout="$1" pid="${2:-}" deadline=$((SECONDS + $1)) rc
    while ((SECONDS < deadline)); do
        rc=0
        probe_bootstrap || rc=$?
        if ((rc == 0)); then
            return 0
        fi
        if ((rc == PROBE_REFUSED)); then
            return 3
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 0.5
    done
    return 1
}

# --------------------------------------------------------------------------- credentials
# The admin's development password: generated once, kept in a file only its owner reads.
# (tools/kafka_access.py generates the other users' passwords in the same directory.)
ensure_admin_password() {
    mkdir -p "$CREDENTIALS_DIR"
    chmod 700 "$CREDENTIALS_DIR"
    if [[ ! -s "$ADMIN_PASSWORD_FILE" ]]; then
        (
            umask 077
            python3 -c 'import secrets; print(secrets.token_urlsafe(32).replace("-", "a").replace("_", "b"))' \
                >"$ADMIN_PASSWORD_FILE.tmp"
        )
        mv -f "$ADMIN_PASSWORD_FILE.tmp" "$ADMIN_PASSWORD_FILE"
        log "generated a development password for $ADMIN_USER in $ADMIN_PASSWORD_FILE"
    fi
    ADMIN_PASSWORD="$(tr -d '\n' <"$ADMIN_PASSWORD_FILE")"
    [[ "$ADMIN_PASSWORD" =~ ^[A-Za-z0-9]+$ ]] \
        || die "$ADMIN_PASSWORD_FILE must hold letters and digits only (it is written into the broker's JAAS configuration)"
}

# --------------------------------------------------------------------------- storage
write_runtime_props() {
    local line
    mkdir -p "$LOG_DIRS" "$BROKER_LOG_DIR"
    (umask 077 && : >"$RUNTIME_PROPS.tmp")
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line//@KAFKA_LOG_DIRS@/"$LOG_DIRS"}"
        line="${line//@KAFKA_PORT@/"$KAFKA_PORT"}"
        line="${line//@KAFKA_CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}"
        line="${line//@KAFKA_ADMIN_USER@/"$ADMIN_USER"}"
        line="${line//@KAFKA_ADMIN_PASSWORD@/"$ADMIN_PASSWORD"}"
        printf '%s\n' "$line" >>"$RUNTIME_PROPS.tmp"
    done <"$KAFKA_CONF_DIR/server.properties"
    mv -f "$RUNTIME_PROPS.tmp" "$RUNTIME_PROPS"
}

# Sets the admin's SCRAM credential through the controller listener (PLAIN, as the admin the
# runtime properties define): on a freshly formatted data dir, on one formatted before SASL,
# and after the password file was replaced. The password travels in no command line.
create_admin_credential() {
    log "setting the SCRAM credential of $ADMIN_USER through the controller listener"
    python3 "$WIRE_CLIENT" set-scram-credential 127.0.0.1 "$KAFKA_CONTROLLER_PORT" \
        --user "$ADMIN_USER" --password-file "$ADMIN_PASSWORD_FILE" \
        || die "could not set the SCRAM credential of $ADMIN_USER on $CONTROLLER_ADDRESS"
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
    ensure_admin_password
    local pid="" rc=0
    pid="$(running_pid)" || pid=""
    probe "$LOCAL_BOOTSTRAP" "$ADMIN_USER" "$ADMIN_PASSWORD_FILE" || rc=$?
    case "$rc" in
        0)
            log "a Kafka broker already answers on $LOCAL_BOOTSTRAP (as $ADMIN_USER); nothing to do"
            return 0
            ;;
        "$PROBE_PLAINTEXT")
            [[ -n "$pid" ]] || die "a broker answers on $LOCAL_BOOTSTRAP without SASL and was not started from $DATA_DIR: stop it (make kafka-down in the checkout that started it), or set KAFKA_PORT/KAFKA_CONTROLLER_PORT for another local broker"
            log "the broker of $DATA_DIR (pid $pid) runs without SASL, as an older checkout configured it: restarting it with SASL/SCRAM and ACLs"
            stop_pid "$pid"
            pid=""
            ;;
        "$PROBE_REFUSED")
            [[ -n "$pid" ]] || die "the broker on $LOCAL_BOOTSTRAP refuses the password of $ADMIN_USER in $ADMIN_PASSWORD_FILE and was not started from $DATA_DIR: set KAFKA_CREDENTIALS_DIR to the credentials of the checkout that started it, or stop it there"
            log "the broker of $DATA_DIR (pid $pid) refuses the password in $ADMIN_PASSWORD_FILE: restarting it to take that password"
            stop_pid "$pid"
            pid=""
            ;;
    esac
    if [[ -n "$pid" ]]; then
        log "broker process $pid is already running (not answering yet); waiting"
        rc=0
        wait_ready "$WAIT_TIMEOUT" "$pid" || rc=$?
        ((rc == 3)) && { create_admin_credential; rc=0; wait_ready "$WAIT_TIMEOUT" "$pid" || rc=$?; }
        ((rc == 0)) && { log "Kafka broker up on $LOCAL_BOOTSTRAP"; return 0; }
        tail_broker_log
        die "broker process $pid did not answer on $LOCAL_BOOTSTRAP within ${WAIT_TIMEOUT}s"
    fi
    if port_open "$LOCAL_BOOTSTRAP"; then
        die "something is listening on $LOCAL_BOOTSTRAP but does not answer as a Kafka broker; free the port (e.g. ss -ltnp 'sport = :$KAFKA_PORT') or set KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS"
    fi
    if port_open "$CONTROLLER_ADDRESS"; then
        die "something is listening on the controller address $CONTROLLER_ADDRESS; free it or set KAFKA_CONTROLLER_PORT"
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

    rc=0
    wait_ready "$WAIT_TIMEOUT" "$pid" || rc=$?
    if ((rc == 3)); then
        # A new data dir, one formatted before SASL, or a new password file: the broker runs,
        # the admin cannot log in yet. (`StorageTool format --add-scram` would put the
        # credential in at format time, with the password on its command line; this one way
        # serves every case.)
        create_admin_credential
        rc=0
        wait_ready "$WAIT_TIMEOUT" "$pid" || rc=$?
    fi
    if ((rc != 0)); then
        tail_broker_log
        if ((rc == 2)); then
            rm -f "$PID_FILE"
            die "Kafka broker exited during startup (see $OUT_FILE and $BROKER_LOG_DIR/server.log)"
        fi
        die "Kafka broker (pid $pid) did not answer a metadata request as $ADMIN_USER on $LOCAL_BOOTSTRAP within ${WAIT_TIMEOUT}s; it is left running, stop it with: $0 down"
    fi
    t1="$(date +%s.%N)"
    log "Kafka broker up on $LOCAL_BOOTSTRAP (SASL/SCRAM-SHA-512, pid $pid), started in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
}

# SIGTERM, then SIGKILL after 30 s.
stop_pid() {
    local pid="$1"
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
        if port_open "$LOCAL_BOOTSTRAP"; then
            log "no broker started from $DATA_DIR is running, but something listens on $LOCAL_BOOTSTRAP (not stopping it)"
        else
            log "Kafka broker is not running"
        fi
        return 0
    fi
    stop_pid "$pid"
}

cmd_status() {
    local bootstrap rc=0
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
    probe_bootstrap || rc=$?
    case "$rc" in
        0) log "Kafka broker answers on $bootstrap" ;;
        "$PROBE_PLAINTEXT") log "a Kafka broker answers on $bootstrap without SASL (an older configuration): run '$0 down' and '$0 up'" ;;
        "$PROBE_REFUSED") log "the Kafka broker on $bootstrap refuses the configured credentials" ;;
        *) log "no Kafka broker answers on $bootstrap" ;;
    esac
    return "$rc"
}

cmd_wait() {
    local bootstrap rc=0
    bootstrap="$(bootstrap_address)"
    wait_ready "$WAIT_TIMEOUT" || rc=$?
    if ((rc == 0)); then
        log "Kafka broker answers on $bootstrap"
        return 0
    fi
    if [[ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        resolve_data_dir
        tail_broker_log
    fi
    ((rc == 3)) && die "the Kafka broker on $bootstrap refuses the configured credentials"
    die "no Kafka broker answered on $bootstrap within ${WAIT_TIMEOUT}s"
}

usage() {
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
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
