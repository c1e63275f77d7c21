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
#   PARTS="dualmx postfix idle bigmsg" selects what runs (postfix alone works
#   before dualmx builds).
#
# Targets (from the project brief): dualmx ≥ 3× Postfix; < 64 MiB RSS with 200
# idle sessions; < 16 MiB RSS growth relaying a 100 MiB message. The results
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
LOOPFS=${LOOPFS:-0}
ARC=${ARC:-0}
PARTS=${PARTS:-dualmx postfix idle bigmsg}

usage() { sed -n '4,/^$/{/^$/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while getopts ":n:s:l:r:i:b:t:o:w:kjah" opt; do
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
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in MSGS SESSIONS SIZE REPS IDLE BIG_MIB LOAD_TIMEOUT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
for p in $PARTS; do
	case $p in dualmx | postfix | idle | bigmsg) ;; *) echo "run.sh: unknown part '$p' in PARTS" >&2; exit 2 ;; esac
done
want() { [[ " $PARTS " == *" $1 "* ]]; }
need_dualmx() { want dualmx || want idle || want bigmsg; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=${RESULTS:-$REPO/bench/results/$STAMP.txt}

# Every process the script starts runs under timeout(1) with this bound.
LIFETIME=$((600 + 6 * REPS * LOAD_TIMEOUT))

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
if need_dualmx; then
	log "building dualmx"
	if ! run timeout 900 go build -o "$WORK/dualmx" ./cmd/dualmx 2>"$WORK/build.err"; then
		cat "$WORK/build.err" >&2
		die "go build ./cmd/dualmx failed; PARTS=postfix runs the Postfix side alone"
	fi
fi

ports=$("$BT" ports 6) || die "could not pick free ports"
read -r P_SINK_D P_SINK_P P_DUALMX P_METRICS P_POSTFIX P_DNS <<<"${ports//$'\n'/ }"
log "ports: sink(dualmx)=$P_SINK_D sink(postfix)=$P_SINK_P dualmx=$P_DUALMX metrics=$P_METRICS postfix=$P_POSTFIX dns=$P_DNS"

FROM=sender@example.org
RCPT=bench@fwd.example.nl

# ---------------------------------------------------------------- sinks

# start_sink NAME PORT: smtp-sink that counts (-c) and discards. It announces
# 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES and DSN, no SIZE (so dualmx keeps
# its own limit) and no STARTTLS.
start_sink() {
	bg "$1" smtp-sink -u nobody -c -h "$1.bench.localhost" "127.0.0.1:$2" 256
	"$BT" waitsmtp -addr "127.0.0.1:$2" -timeout 20s || die "smtp-sink $1 did not start: $(cat "$WORK/$1.err")"
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

# start_dualmx TAG: a fresh dualmx process on the same state dir; sets DPID.
start_dualmx() {
	bg "dualmx-$1" "$WORK/dualmx" serve --config "$DCFG"
	DTPID=$BGPID
	"$BT" waitsmtp -addr "127.0.0.1:$P_DUALMX" -timeout 30s ||
		die "dualmx did not start: $(tail -20 "$WORK/dualmx-$1.err")"
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
relayhost = [127.0.0.1]:$P_SINK_P
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
EOF
	# The inet listener on our port instead of :25; no chroot (the temp queue
	# directory has no chroot environment; it does not change the work done).
	postconf -c "$PF_ETC" -MX smtp/inet
	postconf -c "$PF_ETC" -M "127.0.0.1:$P_POSTFIX/inet = 127.0.0.1:$P_POSTFIX inet n - n - - smtpd"
	postconf -c "$PF_ETC" -F '*/*/chroot = n'
	if ! timeout 60 postfix -c "$PF_ETC" check >&2 || ! timeout 60 postfix -c "$PF_ETC" start >&2; then
		cat "$PF_DIR/maillog" >&2 2>/dev/null || true
		die "postfix -c $PF_ETC would not start"
	fi
	"$BT" waitsmtp -addr "127.0.0.1:$P_POSTFIX" -timeout 30s || {
		cat "$PF_DIR/maillog" >&2 2>/dev/null || true
		die "the Postfix instance does not answer on 127.0.0.1:$P_POSTFIX"
	}
	log "postfix $(postconf -h -c "$PF_ETC" mail_version) running from $PF_ETC"
}

postfix_queue() {
	find "$PF_SPOOL"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l
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
# verdict VALUE OP LIMIT: PASS or FAIL; OP is ">=" or "<".
verdict() {
	if awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { exit !(op == ">=" ? v + 0 >= l + 0 : v + 0 < l + 0) }'; then
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
res "software: $(go version | awk '{ print $3 }'), postfix $pf_version, dualmx $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit')"
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

res "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "${R[@]}" >"$RESULTS"
log "results written to $RESULTS"
