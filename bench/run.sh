#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/run.sh: benchmark dualmx against a stock Postfix relay on this machine.
#
# Run as root from anywhere in a clone (Debian; postfix is installed if missing):
#
#     bench/run.sh                      # the full run, ~4 minutes on 2 cores
#     bench/run.sh -j                   # spools on a fresh journaled ext4
#     bench/run.sh -n 500 -r 1          # a quick smoke run
#     PARTS="dualmx postfix" bench/run.sh   # throughput only
#     bench/run.sh -O                   # the outage part alone (100,000 messages; ~95 minutes)
#     bench/run.sh -O -N 2000 -T 1000   # a quick smoke run of it
#
# What one run measures, all over loopback, all bounded in count and time:
#
#  1. Throughput end to end. Postfix's smtp-source sends MSGS messages of SIZE
#     bytes over SESSIONS concurrent sessions into the relay, which relays them
#     to smtp-sink. The rate is MSGS divided by the time from just before
#     smtp-source starts until smtp-sink has counted the last message, so
#     queueing inside the relay counts. Measured (a) through dualmx (which
#     always fsyncs) and (b) through a stock Postfix instance of its own (temp
#     config_directory and queue_directory, relayhost = the sink, no DNS,
#     default fsync behaviour). REPS repetitions each, interleaved, after a
#     warm-up; the median, min and max are reported with the ratio of medians.
#     dualmx's resolver is a stand-in on loopback (benchtool dns) that answers
#     every query at once with NODATA; Postfix, as configured, looks nothing up.
#  2. Memory with IDLE idle inbound sessions: dualmx's VmRSS with IDLE
#     sessions open (EHLO, then idle); all must still answer NOOP afterwards.
#  3. One BIG_MIB MiB message relayed: dualmx's VmRSS just before, and its
#     peak (VmHWM reset through /proc/PID/clear_refs, cross-checked by polling
#     VmRSS every 10 ms) until the sink has received the message.
#  4. The outage part (not in the default PARTS; -O runs it alone): the next
#     hop down, back, and throttling. For each retry setting (dualmx's defaults
#     and 1 s retries) and each way of being down (nothing listening, or
#     every connection answered 421), OUTAGE_MSGS messages are accepted while
#     the target is down (rate against the rate with the target up, and the
#     connections the relay opened to it meanwhile); dualmx is restarted with
#     them spooled (time until it greets, RSS throughout); the target comes
#     back and the backlog drains. The same for Postfix (its defaults;
#     postqueue -f once the target is back). Then THROTTLE_MSGS messages
#     through a target that answers "451 4.7.500 Server busy" to every second
#     connection (and through one that refuses any session beyond
#     THROTTLE_LIMIT at once): all must arrive; refused attempts are counted.
#     This part runs
#     in a network namespace of its own (unshare -n) when it can, so the
#     kernel's TCP counters count exactly the refused connections.
#
# Options (each also settable by the environment variable in brackets):
#   -n MSGS      messages per throughput run            [MSGS=2000]
#   -s SESSIONS  concurrent smtp-source sessions        [SESSIONS=20]
#   -l SIZE      smtp-source payload bytes per message  [SIZE=4096]
#   -r REPS      repetitions per relay                  [REPS=5]
#   -i IDLE      idle sessions for the memory test      [IDLE=200]
#   -b BIG_MIB   size of the large message in MiB       [BIG_MIB=100]
#   -t SECONDS   bound on each load (send + drain)      [LOAD_TIMEOUT=300]
#   -o FILE      results file      [RESULTS=bench/results/<UTC timestamp>.txt]
#   -w DIR       where the temp work dir is made        [WORK_BASE=/var/tmp]
#   -k           keep the work dir (logs, spools)       [KEEP=1]
#   -j           put both spools on a fresh journaled ext4 file system (a
#                4 GiB sparse loop image in the work dir) instead of the
#                work dir's own file system                [LOOPFS=1]
#   -a           dualmx seals every message with ARC (an RSA-2048 key made
#                with "dualmx arc keygen"); the Postfix side is unchanged, so
#                the ratio compares sealing dualmx with a Postfix that does
#                no signing                                 [ARC=1]
#   -O           run the outage part alone                  [PARTS=outage]
#   -N MSGS      messages spooled during each outage        [OUTAGE_MSGS=100000]
#   -T MSGS      messages through the throttling target     [THROTTLE_MSGS=20000]
#   PARTS="dualmx postfix idle bigmsg" selects what runs (postfix alone works
#   before dualmx builds); "outage" may be added.
#   DUALMX_BIN=PATH uses that dualmx binary instead of building one from the
#   tree (to measure another tree with this harness); DUALMX_VARIANT=NAME
#   names it in the throttling lines (default "default").
#   The outage part also reads: OUTAGE_MODES="refused 421" (how the target is
#   down), OUTAGE_RETRIES="production fast" (dualmx's retry settings),
#   OUTAGE_RELAYS="dualmx postfix", OUTAGE_TIMEOUT=1800 (bound in seconds on
#   each of its loads, restarts and drains), OUTAGE_SETTLE=420 (seconds
#   from the end of a step's removals to the next step's load), RESTART_WINDOW=10 (seconds the
#   restarted relay spends with the target still down), THROTTLE_AT=greeting
#   (or rcpt: where the throttling target says 451), THROTTLE_RULES="second
#   limit" (451 to every second connection; to a session beyond
#   THROTTLE_LIMIT=5 at once), OUTAGE_STEPS="down throttle" (which halves of
#   the part run), OUTAGE_KICK=none (or
#   retry: dualmx gets "queue retry --all" when the target is back, as
#   Postfix gets "postqueue -f"; by default it has to notice by itself).
#   PROFILE=1 has every dualmx it starts write a CPU profile to
#   <work dir>/cpu-<step>.prof (DUALMX_CPUPROFILE); use it with -k.
#
# Targets (from the project brief): dualmx ≥ 3× Postfix; < 64 MiB RSS with 200
# idle sessions; < 16 MiB RSS growth relaying a 100 MiB message. From issue 18
# (outage): acceptance with the target down ≥ 90 % of the rate with it up;
# restart with the backlog spooled listening in ≤ 3 s and RSS ≤ 128 MiB; the
# backlog drained at ≥ 2,000 msg/s and ≥ 2× Postfix; every message through the
# throttling target. The results
# file says PASS/FAIL for each; the exit status is 0 unless the harness itself
# failed (a missed target is a finding, not a harness failure).
#
# Everything the script starts (smtp-sink, dualmx, the resolver stand-in, the
# Postfix instance, a loop mount) is stopped by an EXIT trap, and each process
# also runs under timeout(1), so nothing outlives a killed run by more than
# LIFETIME seconds.

set -euo pipefail

MSGS=${MSGS:-2000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
REPS=${REPS:-5}
IDLE=${IDLE:-200}
BIG_MIB=${BIG_MIB:-100}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-300}
RESULTS=${RESULTS:-}
WORK_BASE=${WORK_BASE:-/var/tmp}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-0}
LOOPFS=${LOOPFS:-0}
ARC=${ARC:-0}
PARTS=${PARTS:-dualmx postfix idle bigmsg}
OUTAGE_MSGS=${OUTAGE_MSGS:-100000}
THROTTLE_MSGS=${THROTTLE_MSGS:-20000}
OUTAGE_MODES=${OUTAGE_MODES:-refused 421}
OUTAGE_RETRIES=${OUTAGE_RETRIES:-production fast}
OUTAGE_RELAYS=${OUTAGE_RELAYS:-dualmx postfix}
OUTAGE_TIMEOUT=${OUTAGE_TIMEOUT:-1800}
RESTART_WINDOW=${RESTART_WINDOW:-10}
OUTAGE_SETTLE=${OUTAGE_SETTLE:-420}
THROTTLE_AT=${THROTTLE_AT:-greeting}
THROTTLE_RULES=${THROTTLE_RULES:-second limit}
THROTTLE_LIMIT=${THROTTLE_LIMIT:-5}
OUTAGE_STEPS=${OUTAGE_STEPS:-down throttle}
DUALMX_VARIANT=${DUALMX_VARIANT:-default}
OUTAGE_KICK=${OUTAGE_KICK:-none}
ORIG_ARGS=("$@")

usage() { sed -n '4,/^$/{/^$/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while getopts ":n:s:l:r:i:b:t:o:w:kjaON:T:h" opt; do
	case $opt in
	n) MSGS=$OPTARG ;;
	s) SESSIONS=$OPTARG ;;
	l) SIZE=$OPTARG ;;
	r) REPS=$OPTARG ;;
	i) IDLE=$OPTARG ;;
	b) BIG_MIB=$OPTARG ;;
	t) LOAD_TIMEOUT=$OPTARG ;;
	o) RESULTS=$OPTARG ;;
	w) WORK_BASE=$OPTARG ;;
	k) KEEP=1 ;;
	j) LOOPFS=1 ;;
	a) ARC=1 ;;
	O) PARTS=outage ;;
	N) OUTAGE_MSGS=$OPTARG ;;
	T) THROTTLE_MSGS=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in MSGS SESSIONS SIZE REPS IDLE BIG_MIB LOAD_TIMEOUT OUTAGE_MSGS THROTTLE_MSGS OUTAGE_TIMEOUT RESTART_WINDOW THROTTLE_LIMIT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
[[ $OUTAGE_SETTLE =~ ^[0-9]+$ ]] || { echo "run.sh: OUTAGE_SETTLE must be a whole number of seconds, got '$OUTAGE_SETTLE'" >&2; exit 2; }
for p in $PARTS; do
	case $p in dualmx | postfix | idle | bigmsg | outage) ;; *) echo "run.sh: unknown part '$p' in PARTS" >&2; exit 2 ;; esac
done
for m in $OUTAGE_MODES; do
	case $m in refused | 421) ;; *) echo "run.sh: OUTAGE_MODES: unknown mode '$m' (refused, 421)" >&2; exit 2 ;; esac
done
for r in $OUTAGE_RETRIES; do
	case $r in production | fast) ;; *) echo "run.sh: OUTAGE_RETRIES: unknown setting '$r' (production, fast)" >&2; exit 2 ;; esac
done
for r in $OUTAGE_RELAYS; do
	case $r in dualmx | postfix) ;; *) echo "run.sh: OUTAGE_RELAYS: unknown relay '$r' (dualmx, postfix)" >&2; exit 2 ;; esac
done
case $THROTTLE_AT in greeting | rcpt) ;; *) echo "run.sh: THROTTLE_AT must be greeting or rcpt" >&2; exit 2 ;; esac
for r in $THROTTLE_RULES; do
	case $r in second | limit) ;; *) echo "run.sh: THROTTLE_RULES: unknown rule '$r' (second, limit)" >&2; exit 2 ;; esac
done
for r in $OUTAGE_STEPS; do
	case $r in down | throttle) ;; *) echo "run.sh: OUTAGE_STEPS: unknown step '$r' (down, throttle)" >&2; exit 2 ;; esac
done
case $OUTAGE_KICK in retry | none) ;; *) echo "run.sh: OUTAGE_KICK must be retry or none" >&2; exit 2 ;; esac
want() { [[ " $PARTS " == *" $1 "* ]]; }
need_dualmx() { want dualmx || want idle || want bigmsg || want outage; }
# outage_has LIST WORD: whether the space-separated LIST holds WORD.
outage_has() { [[ " $1 " == *" $2 "* ]]; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=${RESULTS:-$REPO/bench/results/$STAMP.txt}

# Every process the script starts runs under timeout(1) with this bound.
LIFETIME=$((600 + 6 * REPS * LOAD_TIMEOUT))
if want outage; then LIFETIME=$((LIFETIME + 40 * OUTAGE_TIMEOUT)); fi

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites

[[ $(id -u) -eq 0 ]] || die "run as root (Postfix's master and smtp-sink -u need it)"
[[ $(uname -s) == Linux ]] || die "needs Linux (/proc/PID/status)"
if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
	PATH=$PATH:/usr/sbin:/sbin
fi
if ! command -v postfix >/dev/null || ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
	command -v apt-get >/dev/null || die "postfix (with smtp-source/smtp-sink) is not installed and there is no apt-get"
	log "installing postfix (configuration left empty; the system instance is not used)"
	# "No configuration" leaves /etc/postfix/main.cf absent, so the package
	# does not start the system instance; this script never uses port 25.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	export DEBIAN_FRONTEND=noninteractive
	timeout 900 apt-get install -y -q --no-install-recommends postfix >&2 ||
		{ timeout 300 apt-get update -qq && timeout 900 apt-get install -y -q --no-install-recommends postfix >&2; }
	PATH=$PATH:/usr/sbin:/sbin
fi
for c in go postfix postconf smtp-source smtp-sink timeout awk pgrep; do
	command -v "$c" >/dev/null || die "$c not found"
done

# The outage part counts connections refused by a port nothing listens on
# with the kernel's TCP counters (/proc/net/snmp: AttemptFails), which are per
# network namespace. So the whole run moves into a namespace of its own, with
# only a loopback interface: the counters then see this run's connections and
# nobody else's. Go modules are fetched first (the namespace has no network).
NETNS=host
if want outage; then
	PATH=$PATH:/usr/sbin:/sbin
	if [[ ${DUALMX_BENCH_NETNS:-} == 1 ]]; then
		ip link set lo up || die "cannot bring up lo in the benchmark's network namespace"
		NETNS=private
	elif command -v unshare >/dev/null && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
		log "fetching Go modules, then moving into a network namespace of its own (unshare -n)"
		timeout 600 go mod download || die "go mod download failed"
		exec unshare -n env DUALMX_BENCH_NETNS=1 "$REPO/bench/run.sh" "${ORIG_ARGS[@]}"
	else
		log "WARNING: no network namespace (unshare -n failed): refused connections are counted machine-wide"
	fi
fi

# ---------------------------------------------------------------- work dir and cleanup

mkdir -p "$WORK_BASE"
WORK=$(mktemp -d "$WORK_BASE/dualmx-bench.XXXXXX")
chmod 755 "$WORK" # the postfix user must reach its queue directory below it
PIDS=()
LOOPMNT=
PF_ETC=
DPID=
DTPID=

stop_pid() { # stop_pid PID: TERM, wait up to 25 s, then KILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p" 2>/dev/null || return 0
	for ((i = 0; i < 250; i++)); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.1
	done
	log "pid $p ignored SIGTERM for 25 s; killing it"
	kill -KILL "$p" 2>/dev/null || true
}

stop_postfix() {
	[[ -n $PF_ETC && -f $PF_ETC/main.cf ]] || return 0
	local mpid
	mpid=$(tr -d ' ' 2>/dev/null <"$PF_SPOOL/pid/master.pid" || true)
	timeout 60 postfix -c "$PF_ETC" stop >/dev/null 2>&1 || true
	if [[ -n $mpid ]]; then stop_pid "$mpid"; fi
	PF_ETC=
}

# kill_tree PID: TERM every descendant of PID (deepest first), and PID
# itself unless it is this shell: whatever a step left running, such as an
# smtp-source interrupted by a signal.
kill_tree() {
	local c
	for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done
	if [[ $1 != "$$" ]]; then kill -TERM "$1" 2>/dev/null || true; fi
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	stop_postfix
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	kill_tree $$
	if [[ -n $LOOPMNT ]]; then
		sync
		timeout 60 umount "$LOOPMNT" || timeout 60 umount -l "$LOOPMNT" || log "could not unmount $LOOPMNT"
	fi
	if ((rc != 0)); then
		log "failed (exit $rc); logs are in $WORK"
	elif [[ $KEEP != 1 ]]; then
		rm -rf "$WORK"
	else
		log "work dir kept: $WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run CMD...: run CMD in the background and wait for it. Bash runs a trap only
# once the foreground command has finished, but interrupts "wait" at once, so
# every step that may take long goes through here to keep ^C and SIGTERM prompt.
run() {
	"$@" &
	wait $!
}

# bg NAME CMD...: start CMD under timeout(1) with stdout/stderr in $WORK/NAME.{out,err}.
bg() {
	local name=$1
	shift
	timeout -k 10 "$LIFETIME" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PIDS+=($!)
	BGPID=$!
}

# ---------------------------------------------------------------- spool file system

# Both relays keep their spools under $SPOOLS; logs, binaries and configs
# stay in $WORK.
SPOOLS=$WORK/spools
if [[ $LOOPFS == 1 ]]; then
	for c in mkfs.ext4 mount umount truncate; do command -v "$c" >/dev/null || die "-j needs $c"; done
	truncate -s 4G "$WORK/spools.img"
	timeout 120 mkfs.ext4 -q -F "$WORK/spools.img" >&2
	mkdir -p "$SPOOLS"
	timeout 60 mount -o loop "$WORK/spools.img" "$SPOOLS" || die "cannot loop-mount $WORK/spools.img (no loop devices?)"
	LOOPMNT=$SPOOLS
fi
mkdir -p "$SPOOLS"
chmod 755 "$SPOOLS"

# fs_desc DIR: file system type, device and, for ext4, whether it has a journal.
fs_desc() {
	local dev type j=""
	read -r dev type < <(df --output=source,fstype "$1" | tail -1)
	if [[ $type == ext4 && -r /sys/fs/ext4/${dev##*/}/journal_task ]]; then
		if [[ $(cat "/sys/fs/ext4/${dev##*/}/journal_task") == "<none>" ]]; then j=", no journal"; else j=", journaled"; fi
	fi
	echo "$type on $dev$j"
}

# ---------------------------------------------------------------- build

log "work dir $WORK"
log "building benchtool"
run timeout 600 go build -o "$WORK/benchtool" ./bench/benchtool
BT=$WORK/benchtool
if need_dualmx && [[ -n ${DUALMX_BIN:-} ]]; then
	[[ -x $DUALMX_BIN ]] || die "DUALMX_BIN=$DUALMX_BIN is not an executable"
	cp "$DUALMX_BIN" "$WORK/dualmx"
elif need_dualmx; then
	log "building dualmx"
	if ! run timeout 900 go build -o "$WORK/dualmx" ./cmd/dualmx 2>"$WORK/build.err"; then
		cat "$WORK/build.err" >&2
		die "go build ./cmd/dualmx failed; PARTS=postfix runs the Postfix side alone"
	fi
fi

ports=$("$BT" ports 7) || die "could not pick free ports"
read -r P_SINK_D P_SINK_P P_DUALMX P_METRICS P_POSTFIX P_DNS P_TGT <<<"${ports//$'\n'/ }"
log "ports: sink(dualmx)=$P_SINK_D sink(postfix)=$P_SINK_P dualmx=$P_DUALMX metrics=$P_METRICS postfix=$P_POSTFIX dns=$P_DNS"

FROM=sender@example.org
RCPT=bench@fwd.example.nl

# ---------------------------------------------------------------- sinks

# start_sink NAME PORT: smtp-sink that counts (-c) and discards. It announces
# 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES and DSN, no SIZE (so dualmx keeps
# its own limit) and no STARTTLS.
start_sink() {
	bg "$1" smtp-sink -u nobody -c -h "$1.bench.localhost" "127.0.0.1:$2" 256
	"$BT" waitsmtp -addr "127.0.0.1:$2" -timeout 20s >/dev/null || die "smtp-sink $1 did not start: $(cat "$WORK/$1.err")"
}
if need_dualmx; then start_sink sink-dualmx "$P_SINK_D"; fi

# dualmx's arrival checks (SPF, DKIM, DMARC, ARC) look names up for every
# message. Only loopback may be used here, so a stand-in resolver answers every
# query at once with "no such record", as a local caching resolver would for a
# domain that publishes nothing. (Postfix, as configured, makes no lookups.)
DNSPID=
if need_dualmx; then
	bg dns "$BT" dns -addr "127.0.0.1:$P_DNS" -lifetime "${LIFETIME}s"
	for ((i = 0; i < 50; i++)); do
		DNSPID=$(pgrep -P "$BGPID" -x benchtool || true)
		[[ -z $DNSPID ]] || break
		sleep 0.1
	done
	[[ -n $DNSPID ]] || die "the resolver stand-in did not start: $(cat "$WORK/dns.err")"
fi

# dns_queries: how many queries the stand-in resolver answered so far.
dns_queries() {
	local before
	before=$(grep -c . "$WORK/dns.out" || true)
	kill -USR1 "$DNSPID"
	for ((i = 0; i < 50; i++)); do
		if (($(grep -c . "$WORK/dns.out" || true) > before)); then break; fi
		sleep 0.02
	done
	sed -n 's/^queries=//p' "$WORK/dns.out" | tail -1
}
if want postfix; then start_sink sink-postfix "$P_SINK_P"; fi

# ---------------------------------------------------------------- dualmx

# Every client here is 127.0.0.1, so the per-client cap is raised to the
# global one (Postfix, by default, exempts mynetworks from its client limits:
# smtpd_client_event_limit_exceptions = $mynetworks).
DCFG=$WORK/dualmx.yaml
cat >"$DCFG" <<EOF
hostname: relay.bench.localhost
state_dir: $SPOOLS/dualmx-state
resolver: "127.0.0.1:$P_DNS"
listen: { smtp: "127.0.0.1:$P_DUALMX", metrics: "127.0.0.1:$P_METRICS" }
inbound: { max_message_bytes: 209715200, max_recipients: 100, max_connections: 1000, max_connections_per_ip: 1000 }
target: { host: 127.0.0.1, port: $P_SINK_D, tls: none }
delivery: { retry_initial: 1s, retry_max: 10s, give_up_after: 1h, on_permanent_failure: hold, concurrency: 20 }
EOF
if [[ $ARC == 1 ]]; then
	"$WORK/dualmx" arc keygen --domain relay.bench.localhost --selector bench --out "$WORK/arc.key" >/dev/null
	printf 'arc: { domain: relay.bench.localhost, selector: bench, key_file: "%s" }\n' "$WORK/arc.key" >>"$DCFG"
fi

dualmx_cli() { timeout 60 "$WORK/dualmx" --config "$DCFG" "$@"; }

setup_dualmx_addresses() {
	dualmx_cli address add bench@example.nl --alias "$RCPT" >&2
	dualmx_cli address flip bench@example.nl provisioned >&2
	dualmx_cli address flip bench@example.nl forwarding >&2
}

# start_dualmx TAG [SECONDS]: a fresh dualmx process on the same state dir,
# given SECONDS (default 30) to greet; sets DPID, and DGREET_S to the seconds
# from its start until it greeted (polled every 10 ms).
start_dualmx() {
	local t0 out
	t0=$(date +%s%N)
	if [[ $PROFILE == 1 ]]; then
		DUALMX_CPUPROFILE=$WORK/cpu-$1.prof bg "dualmx-$1" "$WORK/dualmx" serve --config "$DCFG"
	else
		bg "dualmx-$1" "$WORK/dualmx" serve --config "$DCFG"
	fi
	DTPID=$BGPID
	out=$("$BT" waitsmtp -addr "127.0.0.1:$P_DUALMX" -timeout "${2:-30}s" -every 10ms) ||
		die "dualmx did not start: $(tail -20 "$WORK/dualmx-$1.err")"
	DGREET_S=$(awk -v t0="$t0" -v t1="$(kv greeted_unix_ns "$out")" 'BEGIN { printf "%.3f", (t1 - t0) / 1e9 }')
	DPID=$(pgrep -P "$DTPID" -x dualmx || true)
	[[ -n $DPID ]] || die "cannot find the dualmx process under timeout pid $DTPID"
	log "dualmx ($1) running, pid $DPID"
}

# stop_dualmx TAG: stop it; report what it logged at WARN or ERROR level
# (apart from the expected warning about target TLS being off).
stop_dualmx() {
	[[ -n $DTPID ]] || return 0
	stop_pid "$DPID"
	stop_pid "$DTPID"
	DPID=
	DTPID=
	local f=$WORK/dualmx-$1.err n
	n=$(grep -E 'level=(ERROR|WARN)' "$f" | grep -vc 'TLS to the target is off' || true)
	if [[ $n != 0 ]]; then
		res "NOTE: dualmx ($1) logged $n WARN/ERROR line(s); by kind:"
		while IFS= read -r line; do res "    $line"; done < <(grep -E 'level=(ERROR|WARN)' "$f" | grep -v 'TLS to the target is off' |
			sed -E 's/^time=[^ ]* //; s/ id=[^ ]*//; s/ (address|rcpt|from)=[^ ]*//g' | cut -c1-240 | sort | uniq -c | sort -rn | head -5 | sed 's/^ *//')
	fi
}

# dualmx_queue: items left in dualmx's spool (dualmx must be stopped).
dualmx_queue() {
	local out
	if ! out=$(dualmx_cli queue list --json 2>&1); then
		echo "unknown (queue list: $out)"
		return 0
	fi
	grep -c '"id"' <<<"$out" || true
}

# ---------------------------------------------------------------- postfix

PF_DIR=$WORK/postfix
PF_SPOOL=$SPOOLS/postfix-queue
start_postfix() {
	PF_ETC=$PF_DIR/etc
	mkdir -p "$PF_ETC" "$PF_SPOOL" "$PF_DIR/data"
	chown postfix "$PF_DIR/data"
	cp /etc/postfix/master.cf "$PF_ETC/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PF_ETC/master.cf"
	cp /etc/postfix/dynamicmaps.cf "$PF_ETC/" 2>/dev/null || cp /usr/share/postfix/dynamicmaps.cf "$PF_ETC/" 2>/dev/null || true
	# Only what a relay for one domain needs; every performance knob is left
	# at Postfix's default (fsync, in_flow_delay, concurrency, process limits).
	cat >"$PF_ETC/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF_SPOOL
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.bench.localhost
mydomain = bench.localhost
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = fwd.example.nl
relayhost = [127.0.0.1]:${PF_RELAY_PORT:-$P_SINK_P}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps =
alias_maps =
alias_database =
smtp_host_lookup = native
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
${PF_EXTRA:-}
EOF
	# The inet listener on our port instead of :25; no chroot (the temp queue
	# directory has no chroot environment; it does not change the work done).
	postconf -c "$PF_ETC" -MX smtp/inet
	postconf -c "$PF_ETC" -M "127.0.0.1:$P_POSTFIX/inet = 127.0.0.1:$P_POSTFIX inet n - n - - smtpd"
	postconf -c "$PF_ETC" -F '*/*/chroot = n'
	# PF_NOCHECK=1 (a restart of a checked instance) skips "postfix check",
	# which walks the whole queue.
	if { [[ ${PF_NOCHECK:-} != 1 ]] && ! timeout 60 postfix -c "$PF_ETC" check >&2; } || ! timeout 60 postfix -c "$PF_ETC" start >&2; then
		cat "$PF_DIR/maillog" >&2 2>/dev/null || true
		die "postfix -c $PF_ETC would not start"
	fi
	"$BT" waitsmtp -addr "127.0.0.1:$P_POSTFIX" -timeout 30s >/dev/null || {
		cat "$PF_DIR/maillog" >&2 2>/dev/null || true
		die "the Postfix instance does not answer on 127.0.0.1:$P_POSTFIX"
	}
	log "postfix $(postconf -h -c "$PF_ETC" mail_version) running from $PF_ETC"
}

postfix_queue() {
	find "$PF_SPOOL"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l
}

# postfix_queue_settled: postfix_queue once it is empty, or after 30 s
# (Postfix removes a queue file only after its delivery agent reported).
postfix_queue_settled() {
	local i n
	for ((i = 0; i < 300; i++)); do
		n=$(postfix_queue)
		[[ $n != 0 ]] || break
		sleep 0.1
	done
	echo "$n"
}

# ---------------------------------------------------------------- measurements

# load NAME PORT SINK_COUNTER N SESSIONS: one smtp-source load; prints
# "rate accept_seconds total_seconds".
load() {
	local name=$1 port=$2 counter=$3 n=$4 s=$5 base t0 t1 t2 out
	base=$("$BT" sinkcount "$counter")
	t0=$(date +%s%N)
	if ! timeout "$LOAD_TIMEOUT" smtp-source -s "$s" -m "$n" -l "$SIZE" -M client.bench.localhost \
		-f "$FROM" -t "$RCPT" "127.0.0.1:$port" >"$WORK/source-$name.out" 2>&1; then
		cat "$WORK/source-$name.out" >&2
		die "smtp-source into $name failed or timed out"
	fi
	t1=$(date +%s%N)
	out=$("$BT" waitsink -counter "$counter" -want $((base + n)) -timeout "${LOAD_TIMEOUT}s") ||
		die "$name: the sink did not receive all $n messages: $out"
	t2=$(sed -n 's/^end_unix_ns=//p' <<<"$out")
	awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" \
		'BEGIN { printf "%.1f %.3f %.3f\n", n / ((t2 - t0) / 1e9), (t1 - t0) / 1e9, (t2 - t0) / 1e9 }'
}

# stats V...: "median min max" of numbers.
stats() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		printf "%.1f %.1f %.1f\n", m, a[1], a[NR] }'
}

# cpu_ticks PID: user+system CPU time of PID in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# pf_cpu_ticks: CPU time of the whole Postfix instance in clock ticks: the
# master with its reaped children (cutime, cstime) plus every live child. A
# difference of two readings is the instance's CPU in between, also when
# daemons exited (max_use) or started meanwhile.
pf_cpu_ticks() {
	local m c t
	m=$(tr -d ' ' <"$PF_SPOOL/pid/master.pid")
	t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$m/stat")
	for c in $(pgrep -P "$m"); do
		t=$((t + $(cpu_ticks "$c" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# cpu_line WHO TICKS: one results line on CPU per message.
cpu_line() {
	awk -v who="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" -v n="$((MSGS * REPS))" \
		'BEGIN { printf "%s CPU: %.2f s user+system for %d messages, %.0f us per message\n", who, t / hz, n, t / hz / n * 1e6 }'
}

kv() { sed -n "s/^$1=//p" <<<"$2"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# verdict VALUE OP LIMIT: PASS or FAIL; OP is ">=", "<" or "<=".
verdict() {
	if awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { v += 0; l += 0; exit !(op == ">=" ? v >= l : op == "<=" ? v <= l : v < l) }'; then
		echo PASS
	else
		echo FAIL
	fi
}

R=() # result lines
res() { R+=("$*"); printf '%s\n' "$*"; }

pf_version=$(postconf -dh mail_version 2>/dev/null || echo unknown)
res "# dualmx benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
res "machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
if [[ -n ${DUALMX_BIN:-} ]] && need_dualmx; then
	dualmx_desc="$("$WORK/dualmx" version 2>/dev/null | head -1 | sed 's/^dualmx //' || echo 'version unknown') (DUALMX_BIN=$DUALMX_BIN; harness $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit'))"
else
	dualmx_desc=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit')
fi
res "software: $(go version | awk '{ print $3 }'), postfix $pf_version, dualmx $dualmx_desc"
[[ $PROFILE != 1 ]] || res "dualmx CPU profiles: on (PROFILE=1; sampling at 100 Hz)"
res "dualmx ARC sealing: $([[ $ARC == 1 ]] && echo "on (rsa-sha256, 2048-bit key: two RSA signatures per message)" || echo off)"
res "spools on: $(fs_desc "$SPOOLS")$([[ $LOOPFS == 1 ]] && echo " (a loop image made for this run, -j)"), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
probe=$("$BT" fsyncprobe "$SPOOLS" 200)
res "fsync on that file system (200 serial 4 KiB create+fsync, rename+dir fsync): file median $(kv file_fsync_median_ms "$probe") ms (p90 $(kv file_fsync_p90_ms "$probe")), dir median $(kv dir_fsync_median_ms "$probe") ms (p90 $(kv dir_fsync_p90_ms "$probe"))"
res ""

if want dualmx || want postfix; then
	if want dualmx; then
		setup_dualmx_addresses
		start_dualmx throughput
	fi
	if want postfix; then start_postfix; fi

	# Warm-up: start Postfix's smtpd/cleanup/smtp processes, fill caches.
	warm=$((MSGS / 10 > 200 ? 200 : (MSGS / 10 < 20 ? 20 : MSGS / 10)))
	if want dualmx; then run load warmup-dualmx "$P_DUALMX" "$WORK/sink-dualmx.out" "$warm" "$SESSIONS" >/dev/null; fi
	if want postfix; then run load warmup-postfix "$P_POSTFIX" "$WORK/sink-postfix.out" "$warm" "$SESSIONS" >/dev/null; fi
	log "warm-up done ($warm messages each)"

	res "## 1. throughput: $MSGS messages x $SIZE B payload, $SESSIONS sessions, one message per session, $REPS repetitions"
	res "#  rate = messages / (first byte sent .. sink counted the last); accept = smtp-source run time"
	# The ceiling: the same load straight into the sink, no relay between.
	if want dualmx; then csink=sink-dualmx cport=$P_SINK_D; else csink=sink-postfix cport=$P_SINK_P; fi
	run load "direct" "$cport" "$WORK/$csink.out" "$MSGS" "$SESSIONS" >"$WORK/load.res"
	lr=$(<"$WORK/load.res")
	read -r rate acc tot <<<"$lr"
	res "$(printf 'no relay (smtp-source -> smtp-sink): %8.1f msg/s, the ceiling of this harness' "$rate")"
	D_RATES=()
	P_RATES=()
	if want dualmx; then
		dcpu0=$(cpu_ticks "$DPID")
		dns0=$(dns_queries)
	fi
	if want postfix; then pcpu0=$(pf_cpu_ticks); fi
	for ((rep = 1; rep <= REPS; rep++)); do
		# Alternate the order so drift in the machine's load hits both alike.
		order="dualmx postfix"
		((rep % 2 == 0)) && order="postfix dualmx"
		for who in $order; do
			want "$who" || continue
			sleep 2
			if [[ $who == dualmx ]]; then
				run load "dualmx-$rep" "$P_DUALMX" "$WORK/sink-dualmx.out" "$MSGS" "$SESSIONS" >"$WORK/load.res"
				lr=$(<"$WORK/load.res")
				read -r rate acc tot <<<"$lr"
				D_RATES+=("$rate")
			else
				run load "postfix-$rep" "$P_POSTFIX" "$WORK/sink-postfix.out" "$MSGS" "$SESSIONS" >"$WORK/load.res"
				lr=$(<"$WORK/load.res")
				read -r rate acc tot <<<"$lr"
				P_RATES+=("$rate")
			fi
			res "$(printf '%-8s rep %d: %8.1f msg/s  (accepted in %6.2f s, relayed in %6.2f s)' "$who" "$rep" "$rate" "$acc" "$tot")"
		done
	done
	sleep 1
	if want dualmx; then
		read -r dmed dmin dmax < <(stats "${D_RATES[@]}")
		res "$(printf 'dualmx   median %8.1f msg/s  (min %.1f, max %.1f)' "$dmed" "$dmin" "$dmax")"
		res "$(cpu_line "dualmx " $(($(cpu_ticks "$DPID") - dcpu0)))"
		res "dualmx DNS: $(awk -v q="$(($(dns_queries) - dns0))" -v n="$((MSGS * REPS))" 'BEGIN { printf "%d queries for %d messages, %.2f per message (dualmx caches answers for their TTL; the stand-in gives NODATA with a 300 s SOA)", q, n, q / n }')"
		res "dualmx RSS after the load: $(mib "$(kv rss_kib "$("$BT" rss "$DPID")")") MiB (peak $(mib "$(kv hwm_kib "$("$BT" rss "$DPID")")") MiB)"
	fi
	if want postfix; then
		read -r pmed pmin pmax < <(stats "${P_RATES[@]}")
		res "$(printf 'postfix  median %8.1f msg/s  (min %.1f, max %.1f)' "$pmed" "$pmin" "$pmax")"
		res "$(cpu_line "postfix" $(($(pf_cpu_ticks) - pcpu0))) (all its processes)"
		left=$(postfix_queue)
		[[ $left == 0 ]] || res "WARNING: $left message(s) left in Postfix's queue"
	fi
	if want dualmx && want postfix; then
		ratio=$(awk -v d="$dmed" -v p="$pmed" 'BEGIN { printf "%.2f", d / p }')
		if [[ $ARC == 1 ]]; then
			res "ratio dualmx with ARC/postfix (medians): ${ratio}x  target >= 1x: $(verdict "$ratio" ">=" 1)"
		else
			res "ratio dualmx/postfix (medians): ${ratio}x  target >= 3x: $(verdict "$ratio" ">=" 3)"
		fi
	fi
	stop_postfix
	if want dualmx; then
		stop_dualmx throughput
		left=$(dualmx_queue)
		[[ $left == 0 ]] || res "WARNING: $left message(s) left in dualmx's spool"
	fi
	res ""
fi

if want idle || want bigmsg; then
	if ! want dualmx; then setup_dualmx_addresses; fi
fi

if want idle; then
	start_dualmx idle
	sleep 2
	run "$BT" idle -addr "127.0.0.1:$P_DUALMX" -pid "$DPID" -n "$IDLE" -settle 5s >"$WORK/idle.res" ||
		die "idle sessions test failed: $(cat "$WORK/idle.res")"
	out=$(<"$WORK/idle.res")
	rss=$(kv rss_idle_kib "$out")
	res "## 2. memory with $IDLE idle inbound sessions (EHLO, then idle 5 s; all answered NOOP after)"
	res "dualmx RSS before: $(mib "$(kv rss_before_kib "$out")") MiB, with $IDLE sessions: $(mib "$rss") MiB ($(kv per_session_kib "$out") KiB per session)  target < 64 MiB: $(verdict "$rss" "<" 65536)"
	stop_dualmx idle
	res ""
fi

if want bigmsg; then
	start_dualmx bigmsg
	# One small message first, so the delivery path (connection to the
	# target, buffers) exists before the baseline is taken.
	run load bigmsg-warmup "$P_DUALMX" "$WORK/sink-dualmx.out" 1 1 >/dev/null
	sleep 2
	bytes=$((BIG_MIB * 1024 * 1024))
	run "$BT" bigmsg -addr "127.0.0.1:$P_DUALMX" -pid "$DPID" -size "$bytes" -from "$FROM" -to "$RCPT" \
		-sink-counter "$WORK/sink-dualmx.out" -timeout "${LOAD_TIMEOUT}s" -wait "${LOAD_TIMEOUT}s" >"$WORK/bigmsg.res" ||
		die "large message test failed: $(cat "$WORK/bigmsg.res")"
	out=$(<"$WORK/bigmsg.res")
	growth=$(kv growth_kib "$out")
	res "## 3. one $BIG_MIB MiB message relayed (accepted in $(kv accepted_seconds "$out") s, at the sink after $(kv relayed_seconds "$out") s)"
	res "dualmx RSS before: $(mib "$(kv rss_before_kib "$out")") MiB, peak: $(mib "$(( $(kv rss_before_kib "$out") + growth ))") MiB (VmHWM $(mib "$(kv hwm_kib "$out")") MiB, polled VmRSS max $(mib "$(kv peak_rss_sampled_kib "$out")") MiB), after: $(mib "$(kv rss_after_kib "$out")") MiB"
	res "growth: $(mib "$growth") MiB  target < 16 MiB: $(verdict "$growth" "<" 16384)"
	stop_dualmx bigmsg
	res ""
fi

# ---------------------------------------------------------------- outage part

# The next hop for the outage part listens (or not) on P_TGT. What is there:
# nothing (down, connections refused), "benchtool target -mode 421" (down
# but reachable: every connection answered 421 and closed), "benchtool
# target -mode throttle", or smtp-sink (up).
TGT_PID=   # timeout(1) pid of what listens on P_TGT, if anything
TGT_INNER= # its own pid (benchtool), for SIGUSR1
TGT_NAME=  # its log name in $WORK
TGT_COUNTER=

# target_set KIND TAG [ARGS]: put KIND (none, sink, 421, throttle) on P_TGT;
# ARGS go to benchtool target.
target_set() {
	local kind=$1 name="tgt-$2-$1" i
	shift 2
	target_stop
	case $kind in
	none) return 0 ;;
	sink)
		bg "$name" smtp-sink -u nobody -c -h target.bench.localhost "127.0.0.1:$P_TGT" 1024
		TGT_PID=$BGPID
		TGT_COUNTER=$WORK/$name.out
		"$BT" waitsmtp -addr "127.0.0.1:$P_TGT" -timeout 20s -every 10ms >/dev/null ||
			die "smtp-sink on the target port did not start: $(cat "$WORK/$name.err")"
		;;
	421 | throttle)
		TGT_COUNTER=$WORK/$name.cnt
		bg "$name" "$BT" target -addr "127.0.0.1:$P_TGT" -mode "$kind" -at "$THROTTLE_AT" \
			-counter "$TGT_COUNTER" -lifetime "${LIFETIME}s" "$@"
		TGT_PID=$BGPID
		# It says so on stderr once it listens; a test connection would be counted.
		for ((i = 0; i < 200; i++)); do
			grep -q '^target: ' "$WORK/$name.err" 2>/dev/null && break
			kill -0 "$TGT_PID" 2>/dev/null || break
			sleep 0.05
		done
		grep -q '^target: ' "$WORK/$name.err" || die "benchtool target did not start: $(cat "$WORK/$name.err")"
		TGT_INNER=$(pgrep -P "$TGT_PID" -x benchtool || true)
		[[ -n $TGT_INNER ]] || die "cannot find benchtool target under timeout pid $TGT_PID"
		;;
	esac
	TGT_NAME=$name
}

target_stop() {
	[[ -n $TGT_PID ]] || return 0
	stop_pid "$TGT_PID"
	TGT_PID= TGT_INNER= TGT_NAME=
}

# target_stats: "conns refused mesg" so far from the running benchtool target.
target_stats() {
	local f=$WORK/$TGT_NAME.out before i
	before=$(grep -c . "$f" || true)
	kill -USR1 "$TGT_INNER"
	for ((i = 0; i < 100; i++)); do
		if (($(grep -c . "$f" || true) > before)); then break; fi
		sleep 0.02
	done
	tail -1 "$f" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["conns"] + 0, v["refused"] + 0, v["mesg"] + 0 }'
}

# down_conns MODE: connections opened to the down target so far. refused:
# TCP connection attempts refused in this network namespace (AttemptFails;
# only the relay connects to a port where nothing listens while it is
# measured). 421: connections the stand-in accepted.
down_conns() {
	if [[ $1 == refused ]]; then
		"$BT" tcpstat | sed -n 's/^attempt_fails=//p'
	else
		target_stats | awk '{ print $1 }'
	fi
}

# outage_config RETRY TAG [EXTRA]: a dualmx config for the outage part with a
# state dir of its own; sets DCFG. production: dualmx's default retry
# settings (retry_initial 1m, retry_max 1h, give_up_after 120h); fast:
# retries after 1 s, at most 2 s apart. EXTRA: more delivery keys.
outage_config() {
	local retry=$1 tag=$2 extra=${3:-} d
	case $retry in
	production) d="on_permanent_failure: hold, concurrency: 20" ;;
	fast) d="retry_initial: 1s, retry_max: 2s, give_up_after: 1h, on_permanent_failure: hold, concurrency: 20" ;;
	esac
	[[ -z $extra ]] || d="$d, $extra"
	DCFG=$WORK/dualmx-$tag.yaml
	cat >"$DCFG" <<EOF
hostname: relay.bench.localhost
state_dir: $SPOOLS/dualmx-$tag
resolver: "127.0.0.1:$P_DNS"
listen: { smtp: "127.0.0.1:$P_DUALMX", metrics: "127.0.0.1:$P_METRICS" }
inbound: { max_message_bytes: 209715200, max_recipients: 100, max_connections: 1000, max_connections_per_ip: 1000 }
target: { host: 127.0.0.1, port: $P_TGT, tls: none }
delivery: { $d }
EOF
	setup_dualmx_addresses
}

# source_only NAME PORT N: smtp-source N messages into PORT, bounded by
# OUTAGE_TIMEOUT; prints the seconds it took.
source_only() {
	local t0 t1
	t0=$(date +%s%N)
	if ! timeout "$OUTAGE_TIMEOUT" smtp-source -s "$SESSIONS" -m "$3" -l "$SIZE" -M client.bench.localhost \
		-f "$FROM" -t "$RCPT" "127.0.0.1:$2" >"$WORK/source-$1.out" 2>&1; then
		cat "$WORK/source-$1.out" >&2
		die "smtp-source into $1 failed or timed out after ${OUTAGE_TIMEOUT}s"
	fi
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

# sink_wait N: wait until the target's counter reaches N; prints Unix ns.
sink_wait() {
	local out
	out=$("$BT" waitsink -counter "$TGT_COUNTER" -want "$1" -timeout "${OUTAGE_TIMEOUT}s") ||
		die "the target counted $(kv count "$out") of $1 messages within ${OUTAGE_TIMEOUT}s"
	kv end_unix_ns "$out"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }'; }
now_ns() { date +%s%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# settle: wait until OUTAGE_SETTLE seconds have passed since the last step
# ended (FREED_NS), before a step measures acceptance. A step ends having
# removed 100,000 files (its drain removes each delivered message's file,
# then its spool goes), and ext4 without a journal will not reuse an inode
# freed in the last 60 s, or 360 s while its inode table block is dirty
# (fs/ext4/ialloc.c, recently_deleted), stepping over each at every file it
# creates. Measured here after removing 100,000 files: 512 us of CPU per
# create 130 s later, 277 us at 250 s, 51 us at 400 s (45-60 us normally);
# a load started within that window measured 1,244 instead of 620 us of
# dualmx CPU per message and half the rate, whichever relay or step came
# next.
FREED_NS=
settle() {
	[[ -n $FREED_NS ]] || return 0
	local left=$(((FREED_NS + OUTAGE_SETTLE * 1000000000 - $(now_ns)) / 1000000000))
	((left > 0)) || return 0
	log "outage: ${left} s for the file system to settle after the last step's removals"
	sleep "$left"
}

declare -A O_ACC O_CONN O_CPU O_HWM O_GREET O_RCONN O_RSS O_DRAIN O_DRAINF O_FIRST O_LEFT O_KICK
UP_RATES=()

# dualmx_up TAG: OUTAGE_MSGS messages with the target up: the reference rate.
dualmx_up() {
	local tag=$1 n=$OUTAGE_MSGS acc t0 t2 c0
	settle
	log "outage: dualmx, target up ($tag), $n messages"
	outage_config production "$tag"
	target_set sink "$tag"
	start_dualmx "$tag"
	sleep 1
	c0=$(cpu_ticks "$DPID")
	t0=$(now_ns)
	acc=$(source_only "$tag" "$P_DUALMX" "$n")
	t2=$(sink_wait "$n")
	local cpu=$(($(cpu_ticks "$DPID") - c0)) mem
	mem=$("$BT" rss "$DPID")
	UP_RATES+=("$(rate "$n" "$acc")")
	res "$(printf 'dualmx, target up (%s, load %s): accepted %d in %.1f s: %s msg/s; all at the target after %s s; CPU %s us/msg; RSS peak %s MiB' \
		"$tag" "$(loadavg)" "$n" "$acc" "$(rate "$n" "$acc")" "$(secs "$t0" "$t2")" \
		"$(awk -v t="$cpu" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')" \
		"$(mib "$(kv hwm_kib "$mem")")")"
	stop_dualmx "$tag"
	target_stop
	local left
	left=$(dualmx_queue)
	[[ $left == 0 ]] || res "WARNING: $left message(s) left in dualmx's spool ($tag)"
	FREED_NS=$(now_ns)
}

# dualmx_outage RETRY MODE: accept with the target down, restart with the
# backlog, bring the target back, drain.
dualmx_outage() {
	local retry=$1 mode=$2 tag="down-$1-$2" n=$OUTAGE_MSGS k="$1-$2"
	local acc c0 c1 cpu0 cpu mem ts0 ts1 c2 c3 tup tfirst tall rw kickpid=
	settle
	log "outage: dualmx, target down ($mode), $retry retries, $n messages"
	outage_config "$retry" "$tag"
	if [[ $mode == 421 ]]; then target_set 421 "$tag"; else target_set none "$tag"; fi
	start_dualmx "$tag"
	sleep 1
	local la
	la=$(loadavg)
	c0=$(down_conns "$mode")
	cpu0=$(cpu_ticks "$DPID")
	acc=$(source_only "$tag" "$P_DUALMX" "$n")
	c1=$(down_conns "$mode")
	cpu=$(($(cpu_ticks "$DPID") - cpu0))
	mem=$("$BT" rss "$DPID")
	O_ACC[$k]=$(rate "$n" "$acc")
	O_CONN[$k]=$((c1 - c0))
	O_CPU[$k]=$(awk -v t="$cpu" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')
	O_HWM[$k]=$(kv hwm_kib "$mem")
	res "$(printf 'dualmx, target down (%s), %s retries (load %s): accepted %d in %.1f s: %s msg/s; %d connections to the target meanwhile (%.2f per message, %.1f per second); CPU %s us/msg; RSS peak %s MiB' \
		"$mode" "$retry" "$la" "$n" "$acc" "${O_ACC[$k]}" "${O_CONN[$k]}" "$(awk -v c="${O_CONN[$k]}" -v n="$n" 'BEGIN { print c / n }')" \
		"$(awk -v c="${O_CONN[$k]}" -v s="$acc" 'BEGIN { print c / s }')" \
		"${O_CPU[$k]}" "$(mib "${O_HWM[$k]}")")"

	# Restart with the backlog spooled, the target still down.
	ts0=$(now_ns)
	stop_dualmx "$tag"
	ts1=$(now_ns)
	start_dualmx "$tag-restart" "$OUTAGE_TIMEOUT"
	O_GREET[$k]=$DGREET_S
	bg "rss-$tag" "$BT" rsswatch -pid "$DPID" -every 100ms -lifetime "${LIFETIME}s"
	rw=$BGPID
	c2=$(down_conns "$mode")
	sleep "$RESTART_WINDOW"
	c3=$(down_conns "$mode")
	O_RCONN[$k]=$((c3 - c2))
	res "$(printf '  stopped in %s s; restarted with the backlog: greeting after %s s; %d connections to the still-down target in the %d s after' \
		"$(secs "$ts0" "$ts1")" "$DGREET_S" "${O_RCONN[$k]}" "$RESTART_WINDOW")"

	# The target is back.
	target_set sink "$tag-back"
	tup=$(now_ns)
	if [[ $OUTAGE_KICK == retry ]]; then
		(
			s=$(now_ns)
			timeout "$OUTAGE_TIMEOUT" "$WORK/dualmx" --config "$DCFG" queue retry --all >"$WORK/kick-$tag.out" 2>&1
			echo "rc=$? seconds=$(secs "$s" "$(now_ns)")" >>"$WORK/kick-$tag.out"
		) &
		kickpid=$!
		PIDS+=("$kickpid")
	fi
	tfirst=$(sink_wait 1)
	tall=$(sink_wait "$n")
	O_FIRST[$k]=$(secs "$tup" "$tfirst")
	O_DRAIN[$k]=$(rate "$n" "$(secs "$tup" "$tall")")
	O_DRAINF[$k]=$(rate "$((n - 1))" "$(secs "$tfirst" "$tall")")
	local kick="none"
	if [[ -n $kickpid ]]; then
		wait "$kickpid" || true
		kick="queue retry --all: $(head -1 "$WORK/kick-$tag.out" | cut -c1-80), $(sed -n 's/^rc=[0-9]* seconds=//p' "$WORK/kick-$tag.out") s"
	fi
	O_KICK[$k]=$kick
	stop_pid "$rw"
	local w
	w=$(<"$WORK/rss-$tag.out")
	O_RSS[$k]=$(kv max_rss_kib "$w")
	local hwm
	hwm=$(kv hwm_kib "$w")
	((hwm > O_RSS[$k])) && O_RSS[$k]=$hwm
	res "$(printf '  target back: first message there after %s s; all %d after %s s; drain %s msg/s from the first to the last (%s msg/s from the target back); kick: %s' \
		"${O_FIRST[$k]}" "$n" "$(secs "$tup" "$tall")" "${O_DRAINF[$k]}" "${O_DRAIN[$k]}" "$kick")"
	res "$(printf '  RSS of the restarted dualmx throughout (VmHWM, and VmRSS every 100 ms): %s MiB' "$(mib "${O_RSS[$k]}")")"
	stop_dualmx "$tag-restart"
	target_stop
	O_LEFT[$k]=$(dualmx_queue)
	[[ ${O_LEFT[$k]} == 0 ]] || res "WARNING: ${O_LEFT[$k]} message(s) left in dualmx's spool ($tag)"
	rm -rf "$SPOOLS/dualmx-$tag"
	FREED_NS=$(now_ns)
}

declare -A P_ACC P_CONN P_GREET P_RCONN P_DRAIN P_DRAINF P_FIRST

# postfix_outage MODE: the same with a Postfix instance of its own
# (relayhost = the target, its default retry settings); once the target is
# back, postqueue -f.
postfix_outage() {
	local mode=$1 tag="pf-down-$1" n=$OUTAGE_MSGS
	local acc c0 c1 ts0 ts1 c2 c3 tup tfirst tall la
	settle
	log "outage: postfix, target down ($mode), $n messages"
	PF_DIR=$WORK/postfix-$tag
	PF_SPOOL=$SPOOLS/postfix-$tag
	PF_RELAY_PORT=$P_TGT
	if [[ $mode == 421 ]]; then target_set 421 "$tag"; else target_set none "$tag"; fi
	start_postfix
	sleep 1
	la=$(loadavg)
	c0=$(down_conns "$mode")
	acc=$(source_only "$tag" "$P_POSTFIX" "$n")
	c1=$(down_conns "$mode")
	P_ACC[$mode]=$(rate "$n" "$acc")
	P_CONN[$mode]=$((c1 - c0))
	res "$(printf 'postfix, target down (%s) (load %s): accepted %d in %.1f s: %s msg/s; %d connections to the target meanwhile (%.1f per second)' \
		"$mode" "$la" "$n" "$acc" "${P_ACC[$mode]}" "${P_CONN[$mode]}" "$(awk -v c="${P_CONN[$mode]}" -v s="$acc" 'BEGIN { print c / s }')")"
	ts0=$(now_ns)
	stop_postfix
	ts1=$(now_ns)
	PF_NOCHECK=1 start_postfix
	P_GREET[$mode]=$(secs "$ts1" "$(now_ns)")
	c2=$(down_conns "$mode")
	sleep "$RESTART_WINDOW"
	c3=$(down_conns "$mode")
	P_RCONN[$mode]=$((c3 - c2))
	res "$(printf '  stopped in %s s; restarted with the backlog: greeting within %s s (postfix start, then polled every 50 ms); %d connections to the still-down target in the %d s after' \
		"$(secs "$ts0" "$ts1")" "${P_GREET[$mode]}" "${P_RCONN[$mode]}" "$RESTART_WINDOW")"
	target_set sink "$tag-back"
	tup=$(now_ns)
	timeout 60 postqueue -c "$PF_ETC" -f || log "postqueue -f failed"
	tfirst=$(sink_wait 1)
	tall=$(sink_wait "$n")
	P_FIRST[$mode]=$(secs "$tup" "$tfirst")
	P_DRAIN[$mode]=$(rate "$n" "$(secs "$tup" "$tall")")
	P_DRAINF[$mode]=$(rate "$((n - 1))" "$(secs "$tfirst" "$tall")")
	res "$(printf '  target back, postqueue -f: first message there after %s s; all %d after %s s; drain %s msg/s from the first to the last (%s msg/s from the target back)' \
		"${P_FIRST[$mode]}" "$n" "$(secs "$tup" "$tall")" "${P_DRAINF[$mode]}" "${P_DRAIN[$mode]}")"
	local left
	left=$(postfix_queue_settled)
	[[ $left == 0 ]] || res "WARNING: $left message(s) left in Postfix's queue ($tag)"
	stop_postfix
	target_stop
	rm -rf "$PF_SPOOL"
	FREED_NS=$(now_ns)
}

declare -A T_RES

# throttle_rule RULE: what the throttling target refuses, in words.
throttle_rule() {
	case $1 in
	second) echo "every second connection" ;;
	limit) echo "every session beyond $THROTTLE_LIMIT at once" ;;
	esac
}

# throttle_run RULE RELAY VARIANT [EXTRA]: THROTTLE_MSGS messages through a
# target that answers 451 4.7.500 to every second connection (RULE second)
# or to every session beyond THROTTLE_LIMIT at once (limit). Both relays
# retry after 1 s (with the defaults a refused message would wait a minute,
# in Postfix five).
throttle_run() {
	local rule=$1 relay=$2 variant=$3 extra=${4:-} tag="throttle-$1-$2-$3" n=$THROTTLE_MSGS port t0 t2 st la
	settle
	log "outage: $relay ($variant), throttling target ($rule), $n messages"
	if [[ $rule == second ]]; then
		target_set throttle "$tag" -every 2
	else
		target_set throttle "$tag" -every 0 -limit "$THROTTLE_LIMIT"
	fi
	if [[ $relay == dualmx ]]; then
		outage_config fast "$tag" "$extra"
		start_dualmx "$tag"
		port=$P_DUALMX
	else
		PF_DIR=$WORK/postfix-$tag
		PF_SPOOL=$SPOOLS/postfix-$tag
		PF_RELAY_PORT=$P_TGT
		# As fast as dualmx's: with its defaults a refused message waits
		# 300 s or more.
		PF_EXTRA=$'minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s' start_postfix
		port=$P_POSTFIX
	fi
	sleep 1
	la=$(loadavg)
	t0=$(now_ns)
	source_only "$tag" "$port" "$n" >/dev/null
	t2=$(sink_wait "$n")
	sleep 1 # anything delivered twice would show now
	st=$(target_stats)
	local conns refused mesg
	read -r conns refused mesg <<<"$st"
	T_RES["$rule-$relay-$variant"]="$mesg $conns $refused $(rate "$n" "$(secs "$t0" "$t2")")"
	res "$(printf '%s (%s), throttling target (451 4.7.500 at the %s of %s; load %s): %d of %d messages arrived in %s s (%s msg/s); %d connections, %d refused (%.3f refused per message)' \
		"$relay" "$variant" "$THROTTLE_AT" "$(throttle_rule "$rule")" "$la" "$mesg" "$n" "$(secs "$t0" "$t2")" "$(rate "$n" "$(secs "$t0" "$t2")")" "$conns" "$refused" \
		"$(awk -v r="$refused" -v n="$n" 'BEGIN { print r / n }')")"
	if [[ $relay == dualmx ]]; then
		stop_dualmx "$tag"
		local left
		left=$(dualmx_queue)
		[[ $left == 0 ]] || res "WARNING: $left message(s) left in dualmx's spool ($tag)"
		rm -rf "$SPOOLS/dualmx-$tag"
	else
		local left
		left=$(postfix_queue_settled)
		[[ $left == 0 ]] || res "WARNING: $left message(s) left in Postfix's queue ($tag)"
		stop_postfix
		rm -rf "$PF_SPOOL"
	fi
	target_stop
	FREED_NS=$(now_ns)
}

# median V...: the median of numbers (one decimal).
median() { read -r m _ _ < <(stats "$@"); echo "$m"; }

if want outage; then
	res "## 4. outage: the target down, back and throttling ($OUTAGE_MSGS x $SIZE B, $SESSIONS sessions; network namespace: $NETNS)"
	res "#  down 'refused': nothing listens on the target's port; connections counted as refused TCP attempts (/proc/net/snmp AttemptFails$([[ $NETNS == private ]] && echo ", this run's namespace only" || echo ", MACHINE-WIDE: an upper bound"))"
	res "#  down '421': every connection accepted, answered 421 4.3.2 and closed; connections counted by the stand-in"
	res "#  dualmx retries: production = its defaults (retry_initial 1m, retry_max 1h); fast = retry_initial 1s, retry_max 2s; concurrency 20 in both"
	res "#  restart: dualmx stopped with the backlog spooled and started again, the target still down for ${RESTART_WINDOW} s; then the target is back (smtp-sink)"
	res "#  between steps: each load starts ${OUTAGE_SETTLE} s after the step before removed its files (ext4 without a journal steps over inodes freed in the last 60-360 s at every create)"
	res "#  drain: 'first' = target back .. the target counted the first message (how soon the relay noticed); rate = messages from the first to the last"
	res "#  once the target is back dualmx gets $([[ $OUTAGE_KICK == retry ]] && echo "'dualmx queue retry --all'" || echo "no command (it has to notice by itself)"); Postfix gets 'postqueue -f'"
	if outage_has "$OUTAGE_STEPS" down; then
		if outage_has "$OUTAGE_RELAYS" dualmx; then
			dualmx_up up-1
			for r in $OUTAGE_RETRIES; do
				for m in $OUTAGE_MODES; do dualmx_outage "$r" "$m"; done
			done
			dualmx_up up-2
		fi
		if outage_has "$OUTAGE_RELAYS" postfix; then
			for m in $OUTAGE_MODES; do postfix_outage "$m"; done
		fi
	fi
	if outage_has "$OUTAGE_STEPS" throttle; then
		for rule in $THROTTLE_RULES; do
			if outage_has "$OUTAGE_RELAYS" dualmx; then throttle_run "$rule" dualmx "$DUALMX_VARIANT"; fi
			if [[ -n ${DUALMX_FIXED_CONCURRENCY:-} ]] && outage_has "$OUTAGE_RELAYS" dualmx; then
				throttle_run "$rule" dualmx fixed "$DUALMX_FIXED_CONCURRENCY"
			fi
			if outage_has "$OUTAGE_RELAYS" postfix; then throttle_run "$rule" postfix default; fi
		done
	fi

	res ""
	res "## 4. outage: summary"
	down_ran=$(outage_has "$OUTAGE_STEPS" down && echo 1 || true)
	if [[ -n $down_ran ]] && outage_has "$OUTAGE_RELAYS" postfix; then
		pdr=()
		for m in $OUTAGE_MODES; do pdr+=("${P_DRAINF[$m]}"); done
		pmed=$(median "${pdr[@]}")
	fi
	if [[ -n $down_ran ]] && outage_has "$OUTAGE_RELAYS" dualmx; then
		up=$(median "${UP_RATES[@]}")
		res "dualmx acceptance with the target up: $(printf '%s ' "${UP_RATES[@]}")msg/s, median $up"
		worst_greet=0 worst_rss=0
		for r in $OUTAGE_RETRIES; do
			drains=() firsts=()
			for m in $OUTAGE_MODES; do
				k="$r-$m"
				pct=$(awk -v d="${O_ACC[$k]}" -v u="$up" 'BEGIN { printf "%.1f", d / u * 100 }')
				res "$(printf 'down (%s, %s retries): accepted %s msg/s = %s %% of up  target >= 90 %%: %s; %d connections while accepting (Postfix: %s), %d in the %d s after the restart (Postfix: %s)' \
					"$m" "$r" "${O_ACC[$k]}" "$pct" "$(verdict "$pct" ">=" 90)" "${O_CONN[$k]}" "${P_CONN[$m]:-not run}" "${O_RCONN[$k]}" "$RESTART_WINDOW" "${P_RCONN[$m]:-not run}")"
				worst_greet=$(awk -v a="$worst_greet" -v b="${O_GREET[$k]}" 'BEGIN { print (b > a ? b : a) }')
				for v in "${O_RSS[$k]}" "${O_HWM[$k]}"; do ((v > worst_rss)) && worst_rss=$v; done
				drains+=("${O_DRAINF[$k]}")
				firsts+=("${O_FIRST[$k]}")
			done
			dmed=$(median "${drains[@]}")
			line="drain after the outage ($r retries): $(printf '%s ' "${drains[@]}")msg/s from the first message to the last, median $dmed  target >= 2000 msg/s: $(verdict "$dmed" ">=" 2000)"
			if [[ -n ${pmed:-} ]]; then
				ratio=$(awk -v d="$dmed" -v p="$pmed" 'BEGIN { printf "%.2f", d / p }')
				line="$line; ${ratio}x Postfix  target >= 2x: $(verdict "$ratio" ">=" 2)"
			fi
			res "$line; first message $(printf '%s ' "${firsts[@]}")s after the target was back"
		done
		res "restart with $OUTAGE_MSGS spooled: greeting after at most $worst_greet s  target <= 3 s: $(verdict "$worst_greet" "<=" 3)"
		res "RSS at most $(mib "$worst_rss") MiB (accepting during the outage, and restarted through the drain)  target <= 128 MiB: $(verdict "$worst_rss" "<=" 131072)"
	fi
	if [[ -n ${pmed:-} ]]; then
		res "Postfix drain (postqueue -f): $(printf '%s ' "${pdr[@]}")msg/s from the first message to the last, median $pmed"
	fi
	for rule in $THROTTLE_RULES; do
		for v in "dualmx-$DUALMX_VARIANT" dualmx-fixed postfix-default; do
			[[ -n ${T_RES["$rule-$v"]:-} ]] || continue
			read -r mesg conns refused trate <<<"${T_RES["$rule-$v"]}"
			line="throttling target ($(throttle_rule "$rule")), ${v/-/ (}): $mesg of $THROTTLE_MSGS arrived"
			[[ $v == postfix-default ]] || line="$line  target all: $(verdict "$mesg" ">=" "$THROTTLE_MSGS")"
			res "$line; $refused refused of $conns connections; $trate msg/s"
		done
	done
	res ""
fi

res "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "${R[@]}" >"$RESULTS"
log "results written to $RESULTS"
