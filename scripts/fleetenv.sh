#!/usr/bin/env bash
# The fleet test environment of reconciler: N extra dockerd engines (default 2), each in its own network
# namespace with its own data root, reached over TCP with TLS (tcp://ADDR:2376, verified both ways), over ssh
# (an sshd in the namespace, `ssh://root@ADDR`) and over a unix socket in its run dir; optionally a swarm whose
# manager is the first of them and whose workers are the others. Builds on scripts/testenv.sh (registry, base
# image), never touches its engine or its swarm.
#
#   scripts/fleetenv.sh up [--swarm]   start what is missing (idempotent); --swarm also makes engine a a swarm
#                                      manager and joins the others as workers
#   scripts/fleetenv.sh status         say what is running, change nothing (exit 1 if something is missing)
#   scripts/fleetenv.sh down           leave the swarm, stop the engines, sshds and forwarders, delete the
#                                      namespaces and the files `up` wrote (state dirs, .testenv/fleet.env;
#                                      not the lock files /run/reconciler-fleet{,-leases}.lock)
#
# Runs as root on Debian 12. Writes <repo>/.testenv/fleet.env. Addresses: 10.213.0.0/24 between the host
# (10.213.0.1 on `rfleet0`) and the engines (a = 10.213.0.11, b = .12, ...); engine i's docker0 is
# 10.214.i.1/24 and its other networks come from 10.215.(16*i).0/20. Environment: RECONCILER_FLEET_ENGINES
# (N, 1-12, default 2; bench/fleet_scale.py uses 12), RECONCILER_FLEET_RUN_DIR / RECONCILER_FLEET_LIB_DIR (state
# directories),
# RECONCILER_FLEET_STARTED_BY (who `up` records as the starter: tests/fleetenv.py says "pytest"; by hand "manual").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR=${RECONCILER_FLEET_RUN_DIR:-/run/reconciler-fleet}
LIB_DIR=${RECONCILER_FLEET_LIB_DIR:-/var/lib/reconciler-fleet}
LOCK_FILE="$RUN_DIR.lock"
ENGINES=${RECONCILER_FLEET_ENGINES:-2}
STARTED_BY=${RECONCILER_FLEET_STARTED_BY:-manual}
ENV_FILE="$REPO/.testenv/fleet.env"

NET_PREFIX=10.213.0
HOST_ADDR=$NET_PREFIX.1
HOST_IF=rfleet0
HUB_NS=rfleet-hub
HUB_BRIDGE=br0
NS_PREFIX=rfleet-
TLS_PORT=2376
SWARM_PORT=2377

REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_SOCK="$RUN_DIR/registry.sock"
REGISTRY_FWD_PIDFILE="$RUN_DIR/registry-forward.pid"
BASE_IMAGE="$REGISTRY_ADDR/reconciler/busybox:1.35"

PKI="$LIB_DIR/pki"
SSH_DIR="$LIB_DIR/ssh"
OWNER_FILE="$RUN_DIR/started-by"
SWARM_FILE="$RUN_DIR/swarm"
# /run/sshd (sshd's privilege separation directory) is created when missing and then removed by `down`.
SSHD_PRIVSEP=/run/sshd
SSHD_PRIVSEP_MARK="$RUN_DIR/created-run-sshd"

if [[ -x /usr/bin/docker ]]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=docker; fi

log() { printf 'fleetenv: %s\n' "$*" >&2; }
die() {
	printf 'fleetenv: ERROR: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "$1 needs root (run as root or with sudo)"
}

[[ $ENGINES =~ ^([1-9]|1[0-2])$ ]] || die "RECONCILER_FLEET_ENGINES must be 1..12, not '$ENGINES'"

# ---------------------------------------------------------------------------------------------- naming
# Engine i (1-based) is named by a letter: a, b, c, ...
engine_name() { printf "\\x$(printf %x $((96 + $1)))\n"; }
engine_index() { printf '%d' $(($(printf '%d' "'$1") - 96)); }
engine_addr() { echo "$NET_PREFIX.$((10 + $(engine_index "$1")))"; }
engine_ns() { echo "$NS_PREFIX$1"; }
engine_run() { echo "$RUN_DIR/$1"; }
engine_lib() { echo "$LIB_DIR/$1"; }
engine_unix() { echo "unix://$RUN_DIR/$1/docker.sock"; }
engine_tcp() { echo "tcp://$(engine_addr "$1"):$TLS_PORT"; }
engine_ssh() { echo "ssh://root@$(engine_addr "$1")"; }
ns_path() { echo "/var/run/netns/$1"; }

# The engines that exist now (by their run dirs), whatever N was when they were started.
existing_engines() {
	local d
	for d in "$RUN_DIR"/?; do
		[[ -d $d ]] && basename "$d"
	done
	return 0
}

wanted_engines() {
	local i
	for ((i = 1; i <= ENGINES; i++)); do engine_name "$i"; done
}

# dk HOST ARGS...: the docker CLI against one engine, bounded in time.
dk() {
	local host=$1
	shift
	DOCKER_HOST="$host" DOCKER_TLS_VERIFY= DOCKER_CERT_PATH= timeout "${DK_TIMEOUT:-120}" "$DOCKER_CLI" "$@"
}

# dk_tls NAME ARGS...: the docker CLI over TCP with TLS, verified both ways.
dk_tls() {
	local name=$1
	shift
	timeout "${DK_TIMEOUT:-120}" "$DOCKER_CLI" --host "$(engine_tcp "$name")" --tlsverify \
		--tlscacert "$PKI/ca.pem" --tlscert "$PKI/client/cert.pem" --tlskey "$PKI/client/key.pem" "$@"
}

engine_answers() { DK_TIMEOUT=10 dk "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
tls_answers() { DK_TIMEOUT=10 dk_tls "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
ssh_answers() {
	timeout 15 "$SSH_DIR/bin/ssh" "root@$(engine_addr "$1")" docker version --format '{{.Server.Version}}' \
		</dev/null >/dev/null 2>&1
}

# running PID: the process exists and is not a zombie (PID 1 here reaps orphans only now and then).
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# pid_alive PIDFILE COMM: the pid in PIDFILE runs a program named COMM (a recycled pid is not ours) and is no
# zombie.
pid_alive() {
	local pid
	[[ -f $1 ]] && pid=$(cat "$1") && [[ $pid =~ ^[0-9]+$ ]] &&
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && running "$pid"
}

# wait_for SECONDS WHAT CHECK...: polls CHECK every half second, bounded.
wait_for() {
	local seconds=$1 what=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
	log "$what is up"
}

# in_ns NS CMD...: run CMD in namespace NS's network only (nsenter keeps the mounts and /sys as they are;
# `ip netns exec` would remount /sys, which breaks dockerd's cgroup handling).
in_ns() {
	local ns=$1
	shift
	nsenter --net="$(ns_path "$ns")" -- "$@"
}

# ---------------------------------------------------------------------------------------------- packages
install_packages() {
	local missing=() pkg
	for pkg in openssl openssh-server openssh-client socat iproute2 util-linux curl; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Keep openssh-server's own ssh.service from starting on install (an sshd on the host's port 22 is not
	# ours to run); policy-rc.d is honoured by invoke-rc.d and deb-systemd-invoke.
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, from reconciler scripts/fleetenv.sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	((own_policy == 0)) || rm -f "$policy"
	((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
}

# ---------------------------------------------------------------------------------------------- prerequisites
registry_answers() {
	[[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" || true) == 200 ]]
}

check_testenv() {
	registry_answers || die "the registry on $REGISTRY_ADDR does not answer: run scripts/testenv.sh up first"
	local accept=application/vnd.docker.distribution.manifest.v2+json
	[[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' -H "Accept: $accept" \
		"http://$REGISTRY_ADDR/v2/reconciler/busybox/manifests/1.35" || true) == 200 ]] ||
		die "the registry does not serve $BASE_IMAGE: run scripts/testenv.sh up first"
}

# ---------------------------------------------------------------------------------------------- network
# The hub namespace holds the bridge all engines hang on, so traffic between engines is bridged there and
# never passes the host's FORWARD chain (policy DROP, set by the main dockerd; the host has
# bridge-nf-call-iptables=1). The host is a plain member of that segment through the veth rfleet0.
ensure_hub() {
	[[ -e $(ns_path "$HUB_NS") ]] || ip netns add "$HUB_NS"
	ip -n "$HUB_NS" link set lo up
	ip -n "$HUB_NS" link show "$HUB_BRIDGE" >/dev/null 2>&1 || ip -n "$HUB_NS" link add "$HUB_BRIDGE" type bridge
	ip -n "$HUB_NS" link set "$HUB_BRIDGE" up
	if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
		ip link add "$HOST_IF" type veth peer name uplink netns "$HUB_NS"
	fi
	ip -n "$HUB_NS" link set uplink master "$HUB_BRIDGE" up
	# (no `| grep -q` here: with pipefail, grep quitting early makes ip die of SIGPIPE and the test fail)
	[[ $(ip -o addr show dev "$HOST_IF") == *"inet $HOST_ADDR/24"* ]] || ip addr add "$HOST_ADDR/24" dev "$HOST_IF"
	ip link set "$HOST_IF" up
}

ensure_engine_net() {
	local name=$1 ns addr
	ns=$(engine_ns "$name")
	addr=$(engine_addr "$name")
	[[ -e $(ns_path "$ns") ]] || ip netns add "$ns"
	ip -n "$ns" link set lo up
	if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
		ip -n "$HUB_NS" link del "veth-$name" >/dev/null 2>&1 || true
		ip -n "$HUB_NS" link add "veth-$name" type veth peer name eth0 netns "$ns"
	fi
	ip -n "$HUB_NS" link set "veth-$name" master "$HUB_BRIDGE" up
	[[ $(ip -n "$ns" -o addr show dev eth0) == *"inet $addr/24"* ]] || ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
}

# ---------------------------------------------------------------------------------------------- pki
# openssl config for the CA and the leaf certificates; SAN comes from the environment.
write_openssl_cnf() {
	cat >"$PKI/openssl.cnf" <<-'EOF'
		# written by scripts/fleetenv.sh
		[req]
		distinguished_name = dn
		prompt = no
		[dn]
		CN = unused
		[ca]
		basicConstraints = critical,CA:TRUE
		keyUsage = critical,keyCertSign,cRLSign
		subjectKeyIdentifier = hash
		[server]
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature,keyEncipherment
		extendedKeyUsage = serverAuth
		subjectAltName = $ENV::SAN
		[client]
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature
		extendedKeyUsage = clientAuth
	EOF
}

# new_ca DIR CN: DIR/ca.pem, DIR/ca-key.pem (EC P-256, 30 days).
new_ca() {
	local dir=$1 cn=$2
	mkdir -p "$dir"
	SAN= openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -days 30 \
		-config "$PKI/openssl.cnf" -extensions ca -subj "/CN=$cn" \
		-keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
	chmod 600 "$dir/ca-key.pem"
}

# new_leaf CADIR OUTDIR CN EXTENSIONS [SAN]: OUTDIR/cert.pem, OUTDIR/key.pem signed by CADIR's CA.
new_leaf() {
	local cadir=$1 out=$2 cn=$3 ext=$4 san=${5:-}
	mkdir -p "$out"
	SAN=$san openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 \
		-config "$PKI/openssl.cnf" -subj "/CN=$cn" -keyout "$out/key.pem" -out "$out/req.csr" 2>/dev/null
	SAN=$san openssl x509 -req -sha256 -days 30 -in "$out/req.csr" -CA "$cadir/ca.pem" -CAkey "$cadir/ca-key.pem" \
		-set_serial "0x$(openssl rand -hex 12)" -extfile "$PKI/openssl.cnf" -extensions "$ext" \
		-out "$out/cert.pem" 2>/dev/null
	rm -f "$out/req.csr"
	chmod 600 "$out/key.pem"
	cp "$cadir/ca.pem" "$out/ca.pem" # DOCKER_CERT_PATH layout: ca.pem, cert.pem, key.pem
}

ensure_pki() {
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	write_openssl_cnf
	if [[ ! -f $PKI/ca.pem ]]; then
		log "generating the fleet CA and client certificate in $PKI"
		new_ca "$PKI" "reconciler fleet test CA"
		new_leaf "$PKI" "$PKI/client" "reconciler-fleet-client" client
		# A second, unrelated CA with its own client certificate: what a test uses to check that a wrong CA
		# or a client certificate from elsewhere is refused.
		new_ca "$PKI/rogue" "reconciler fleet rogue CA"
		new_leaf "$PKI/rogue" "$PKI/rogue/client" "reconciler-fleet-rogue-client" client
	fi
	local name
	for name in $(wanted_engines); do
		if [[ ! -f $PKI/$name/cert.pem ]]; then
			new_leaf "$PKI" "$PKI/$name" "$(engine_ns "$name")" server \
				"IP:$(engine_addr "$name"),DNS:$(engine_ns "$name")"
		fi
	done
}

# ---------------------------------------------------------------------------------------------- ssh
# The client side is a generated ssh config used with `ssh -F`; a wrapper $SSH_DIR/bin/ssh adds the -F, so
# whatever runs `ssh` from PATH (docker-py's use_ssh_client=True, the docker CLI's ssh:// support) uses it when
# that directory comes first in PATH. ssh reads ~/.ssh from the passwd entry, not $HOME, so HOME cannot do it.
ensure_ssh_client() {
	mkdir -p "$SSH_DIR/bin"
	chmod 700 "$SSH_DIR"
	if [[ ! -f $SSH_DIR/id_ed25519 ]]; then
		ssh-keygen -q -t ed25519 -N '' -C reconciler-fleet-client -f "$SSH_DIR/id_ed25519"
	fi
	cp "$SSH_DIR/id_ed25519.pub" "$SSH_DIR/authorized_keys"
	chmod 600 "$SSH_DIR/authorized_keys"
	local name known=() tmp="$SSH_DIR/config.tmp.$$"
	{
		echo "# written by scripts/fleetenv.sh; use with ssh -F $SSH_DIR/config (or $SSH_DIR/bin/ssh)"
		# Every engine that runs or is wanted: a smaller N later leaves the others running, still reachable.
		for name in $({ existing_engines; wanted_engines; } | sort -u); do
			local lib
			lib=$(engine_lib "$name")
			mkdir -p "$lib"
			if [[ ! -f $lib/ssh_host_ed25519_key ]]; then
				ssh-keygen -q -t ed25519 -N '' -C "$(engine_ns "$name")" -f "$lib/ssh_host_ed25519_key"
			fi
			known+=("$(engine_addr "$name"),$(engine_ns "$name") $(cut -d' ' -f1,2 "$lib/ssh_host_ed25519_key.pub")")
			cat <<-EOF
				Host $(engine_ns "$name") $(engine_addr "$name")
				  HostName $(engine_addr "$name")
			EOF
		done
		# The common options apply to the fleet's hosts only; any other host gets ssh's defaults (but, with
		# -F, not ~/.ssh/config).
		cat <<-EOF
			Host $NS_PREFIX* $NET_PREFIX.*
			  User root
			  IdentityFile $SSH_DIR/id_ed25519
			  IdentitiesOnly yes
			  UserKnownHostsFile $SSH_DIR/known_hosts
			  GlobalKnownHostsFile /dev/null
			  StrictHostKeyChecking yes
			  BatchMode yes
			  ConnectTimeout 5
			  ServerAliveInterval 10
			  LogLevel ERROR
		EOF
	} >"$tmp"
	mv "$tmp" "$SSH_DIR/config"
	printf '%s\n' "${known[@]}" >"$SSH_DIR/known_hosts"
	cat >"$SSH_DIR/bin/ssh" <<-EOF
		#!/bin/sh
		# written by scripts/fleetenv.sh: the system ssh with the fleet's config
		exec /usr/bin/ssh -F $SSH_DIR/config "\$@"
	EOF
	chmod 755 "$SSH_DIR/bin/ssh"
}

start_sshd() {
	local name=$1 run addr
	run=$(engine_run "$name")
	addr=$(engine_addr "$name")
	pid_alive "$run/sshd.pid" sshd && return 0
	if [[ ! -d $SSHD_PRIVSEP ]]; then
		mkdir -p "$SSHD_PRIVSEP"
		chmod 755 "$SSHD_PRIVSEP"
		touch "$SSHD_PRIVSEP_MARK"
	fi
	# SetEnv points `docker system dial-stdio` (what ssh:// clients run) at this engine's socket.
	cat >"$run/sshd_config" <<-EOF
		# written by scripts/fleetenv.sh
		ListenAddress $addr:22
		HostKey $(engine_lib "$name")/ssh_host_ed25519_key
		PidFile $run/sshd.pid
		AuthorizedKeysFile $SSH_DIR/authorized_keys
		PermitRootLogin prohibit-password
		AllowUsers root
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		PrintMotd no
		PrintLastLog no
		MaxStartups 64:30:128
		MaxSessions 64
		SetEnv DOCKER_HOST=$(engine_unix "$name")
	EOF
	log "starting sshd for engine $name on $addr:22"
	in_ns "$(engine_ns "$name")" /usr/sbin/sshd -f "$run/sshd_config" -E "$run/sshd.log" </dev/null 9>&-
	wait_for 15 "sshd $name" pid_alive "$run/sshd.pid" sshd || die "sshd $name did not start; see $run/sshd.log"
}

# ---------------------------------------------------------------------------------------------- registry
# Engines in the namespaces pull from the same 127.0.0.1:5000 as the main engine, so image references are
# the same on every engine (and dockerd treats 127.0.0.0/8 registries as insecure by default): in each
# namespace a socat listens on 127.0.0.1:5000 and forwards to a unix socket, where a socat on the host
# forwards to the registry. No address of the host is opened to the namespaces.
start_registry_forward() {
	if ! pid_alive "$REGISTRY_FWD_PIDFILE" socat; then
		setsid nohup socat "UNIX-LISTEN:$REGISTRY_SOCK,fork,unlink-early,mode=600" "TCP:$REGISTRY_ADDR" \
			</dev/null >>"$RUN_DIR/registry-forward.log" 2>&1 9>&- &
		echo $! >"$REGISTRY_FWD_PIDFILE"
	fi
	wait_for 10 "registry forwarder" test -S "$REGISTRY_SOCK" || die "the registry forwarder did not start"
}

ns_registry_answers() {
	[[ $(in_ns "$(engine_ns "$1")" curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" ||
		true) == 200 ]]
}

start_ns_registry_forward() {
	local name=$1 run
	run=$(engine_run "$name")
	if ! pid_alive "$run/registry-forward.pid" socat; then
		setsid nohup nsenter --net="$(ns_path "$(engine_ns "$name")")" -- \
			socat "TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$REGISTRY_SOCK" \
			</dev/null >>"$run/registry-forward.log" 2>&1 9>&- &
		echo $! >"$run/registry-forward.pid"
	fi
	wait_for 10 "registry in namespace $name" ns_registry_answers "$name" ||
		die "the registry does not answer on $REGISTRY_ADDR in $(engine_ns "$name")"
}

# ---------------------------------------------------------------------------------------------- dockerd
start_dockerd() {
	local name=$1 i run lib ns
	i=$(engine_index "$name")
	run=$(engine_run "$name")
	lib=$(engine_lib "$name")
	ns=$(engine_ns "$name")
	engine_answers "$(engine_unix "$name")" && return 0
	mkdir -p "$lib/docker" "$run"
	[[ -f $lib/daemon.json ]] || echo '{}' >"$lib/daemon.json"
	if pid_alive "$run/docker.pid" dockerd; then
		log "dockerd $name (pid $(cat "$run/docker.pid")) is running but not answering yet; waiting"
	else
		log "starting dockerd $name in namespace $ns ($(engine_tcp "$name"), $(engine_unix "$name"))"
		# nsenter --net only: same mounts, same /sys (so cgroups work), own network. unshare --uts gives the
		# engine its own hostname (swarm node names, `docker info` Name). --config-file keeps a host
		# /etc/docker/daemon.json out.
		setsid nohup nsenter --net="$(ns_path "$ns")" -- unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$ns" \
			dockerd \
			--config-file="$lib/daemon.json" \
			--host="$(engine_unix "$name")" \
			--host="$(engine_tcp "$name")" \
			--tlsverify \
			--tlscacert="$PKI/ca.pem" \
			--tlscert="$PKI/$name/cert.pem" \
			--tlskey="$PKI/$name/key.pem" \
			--data-root="$lib/docker" \
			--exec-root="$run/exec" \
			--pidfile="$run/docker.pid" \
			--containerd-namespace="$ns" \
			--containerd-plugins-namespace="$ns-plugins" \
			--bip="10.214.$i.1/24" \
			--default-address-pool="base=10.215.$((16 * i)).0/20,size=24" \
			--label="io.reconciler.fleet-engine=$name" \
			</dev/null >>"$run/dockerd.log" 2>&1 9>&- &
		echo $! >"$run/launch.pid"
	fi
	if ! wait_for 90 "dockerd $name" dockerd_up_or_dead "$name"; then
		log "dockerd $name did not answer within 90 s; last lines of $run/dockerd.log:"
		tail -n 40 "$run/dockerd.log" >&2 || true
		exit 1
	fi
}

# dockerd_up_or_dead NAME: true when the engine answers; exits the script when its dockerd is gone.
dockerd_up_or_dead() {
	engine_answers "$(engine_unix "$1")" && return 0
	local run
	run=$(engine_run "$1")
	# The pidfile appears only once dockerd runs; before that, the nsenter/unshare/sh chain has our pid.
	if ! pid_alive "$run/docker.pid" dockerd && ! kill -0 "$(cat "$run/launch.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
		log "dockerd $1 exited; last lines of $run/dockerd.log:"
		tail -n 40 "$run/dockerd.log" >&2 || true
		exit 1
	fi
	return 1
}

ensure_base_image() {
	local name=$1
	if ! dk "$(engine_unix "$name")" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
		log "pulling $BASE_IMAGE into engine $name"
		dk "$(engine_unix "$name")" pull -q "$BASE_IMAGE" >/dev/null
	fi
}

# ---------------------------------------------------------------------------------------------- swarm
# The main engine's swarm advertises 127.0.0.1, which is the namespace's own loopback inside a namespace, and
# a node's advertise address cannot be changed without leaving the swarm (which would take the overlay
# networks of everyone's tests with it). So the fleet has a swarm of its own: engine a is the manager
# (advertising 10.213.0.11), the others join it as workers.
swarm_state() { DK_TIMEOUT=15 dk "$(engine_unix "$1")" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
node_id() { DK_TIMEOUT=15 dk "$(engine_unix "$1")" info --format '{{.Swarm.NodeID}}' 2>/dev/null; }

worker_ready() {
	[[ $(DK_TIMEOUT=15 dk "$(engine_unix a)" node inspect "$1" --format '{{.Status.State}}' 2>/dev/null) == ready ]]
}

ensure_swarm() {
	local manager=a addr state name
	addr=$(engine_addr "$manager")
	state=$(swarm_state "$manager")
	case $state in
	active) ;;
	inactive)
		log "initialising swarm mode on engine $manager (advertising $addr)"
		# Overlay subnets from 10.216.0.0/16 rather than swarm's default 10.0.0.0/8 (whose /24s the main
		# engine's swarm uses too): every address on the machine then says which engine it belongs to.
		dk "$(engine_unix "$manager")" swarm init --advertise-addr "$addr" --listen-addr "$addr:$SWARM_PORT" \
			--default-addr-pool 10.216.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
		;;
	*) die "swarm is in state '$state' on engine $manager; run scripts/fleetenv.sh down and up again" ;;
	esac
	local token members
	token=$(dk "$(engine_unix "$manager")" swarm join-token -q worker)
	members=$(dk "$(engine_unix "$manager")" node ls -q)
	for name in $(wanted_engines); do
		[[ $name == "$manager" ]] && continue
		state=$(swarm_state "$name")
		local id
		id=$(node_id "$name")
		if [[ $state == active ]] && grep -qx "$id" <<<"$members"; then
			continue
		fi
		if [[ $state != inactive ]]; then
			log "engine $name is in swarm state '$state' but not in engine $manager's swarm; leaving it"
			dk "$(engine_unix "$name")" swarm leave --force >/dev/null 2>&1 || true
		fi
		log "joining engine $name to the swarm as a worker"
		dk "$(engine_unix "$name")" swarm join --token "$token" --advertise-addr "$(engine_addr "$name")" \
			--listen-addr "$(engine_addr "$name"):$SWARM_PORT" "$addr:$SWARM_PORT" >/dev/null
		id=$(node_id "$name")
		wait_for 60 "swarm worker $name" worker_ready "$id" || die "engine $name did not become a ready worker"
	done
	echo "$manager" >"$SWARM_FILE"
}

# ---------------------------------------------------------------------------------------------- env file
write_env_file() {
	mkdir -p "$(dirname "$ENV_FILE")"
	local tmp="$ENV_FILE.tmp.$$" name upper names
	names=$(wanted_engines | tr '\n' ' ')
	{
		echo "# written by scripts/fleetenv.sh; source it to reach the fleet engines"
		echo "export RECONCILER_FLEET_NAMES='${names% }'"
		echo "export RECONCILER_FLEET_HOST_ADDR=$HOST_ADDR"
		for name in $(wanted_engines); do
			upper=${name^^}
			echo "export RECONCILER_FLEET_${upper}_ADDR=$(engine_addr "$name")"
			echo "export RECONCILER_FLEET_${upper}_UNIX=$(engine_unix "$name")"
			echo "export RECONCILER_FLEET_${upper}_TCP=$(engine_tcp "$name")"
			echo "export RECONCILER_FLEET_${upper}_SSH=$(engine_ssh "$name")"
			echo "export RECONCILER_FLEET_${upper}_NETNS=$(engine_ns "$name")"
		done
		echo "export RECONCILER_FLEET_TLS_CA=$PKI/ca.pem"
		echo "export RECONCILER_FLEET_TLS_CERT=$PKI/client/cert.pem"
		echo "export RECONCILER_FLEET_TLS_KEY=$PKI/client/key.pem"
		echo "export RECONCILER_FLEET_CERT_PATH=$PKI/client"
		echo "export RECONCILER_FLEET_ROGUE_CA=$PKI/rogue/ca.pem"
		echo "export RECONCILER_FLEET_ROGUE_CERT=$PKI/rogue/client/cert.pem"
		echo "export RECONCILER_FLEET_ROGUE_KEY=$PKI/rogue/client/key.pem"
		echo "export RECONCILER_FLEET_SSH_CONFIG=$SSH_DIR/config"
		echo "export RECONCILER_FLEET_SSH_KEY=$SSH_DIR/id_ed25519"
		echo "export RECONCILER_FLEET_SSH_KNOWN_HOSTS=$SSH_DIR/known_hosts"
		echo "export RECONCILER_FLEET_SSH_PATH=$SSH_DIR/bin"
		echo "export RECONCILER_FLEET_REGISTRY=$REGISTRY_ADDR"
		echo "export RECONCILER_FLEET_BASE_IMAGE=$BASE_IMAGE"
		if [[ -f $SWARM_FILE ]]; then
			echo "export RECONCILER_FLEET_SWARM_MANAGER=$(cat "$SWARM_FILE")"
		else
			echo "export RECONCILER_FLEET_SWARM_MANAGER="
		fi
	} >"$tmp"
	mv "$tmp" "$ENV_FILE"
}

summary() {
	local name swarm="none"
	[[ -f $SWARM_FILE ]] && swarm="manager $(cat "$SWARM_FILE")"
	echo "fleetenv: $1 (swarm: $swarm; started by $(cat "$OWNER_FILE" 2>/dev/null || echo '?'))"
	for name in $(existing_engines); do
		printf '  %s  %-14s %s | %s | %s (%s)\n' "$name" "$(engine_ns "$name")" "$(engine_unix "$name")" \
			"$(engine_tcp "$name")" "$(engine_ssh "$name")" \
			"$(DK_TIMEOUT=10 dk "$(engine_unix "$name")" info --format \
				'engine {{.ServerVersion}}, {{.Name}}, swarm {{.Swarm.LocalNodeState}}' 2>/dev/null ||
				echo 'not answering')"
	done
	echo "  env file  $ENV_FILE   (source it: . .testenv/fleet.env)"
}

# ---------------------------------------------------------------------------------------------- commands
cmd_up() {
	local swarm=0 arg
	for arg in "$@"; do
		case $arg in
		--swarm) swarm=1 ;;
		*) die "unknown option '$arg' for up (--swarm)" ;;
		esac
	done
	need_root "up"
	exec 9>"$LOCK_FILE"
	flock -w 300 9 || die "another scripts/fleetenv.sh holds $LOCK_FILE"
	install_packages
	check_testenv
	mkdir -p "$RUN_DIR" "$LIB_DIR"
	chmod 755 "$RUN_DIR" "$LIB_DIR"
	# Who started it decides whether a test session may take it down again; up by hand keeps it.
	if [[ ! -f $OWNER_FILE || $STARTED_BY == manual ]]; then echo "$STARTED_BY" >"$OWNER_FILE"; fi
	ensure_hub
	ensure_pki
	ensure_ssh_client
	start_registry_forward
	local name
	for name in $(wanted_engines); do
		mkdir -p "$(engine_run "$name")" "$(engine_lib "$name")"
		ensure_engine_net "$name"
		start_ns_registry_forward "$name"
		start_dockerd "$name"
		wait_for 30 "engine $name over TLS" tls_answers "$name" || die "engine $name does not answer over TLS"
		start_sshd "$name"
		wait_for 30 "engine $name over ssh" ssh_answers "$name" || die "engine $name does not answer over ssh"
		ensure_base_image "$name"
	done
	((swarm == 0)) || ensure_swarm
	write_env_file
	summary ready
}

cmd_status() {
	local rc=0 name
	if [[ ! -d $RUN_DIR ]] || [[ -z $(existing_engines) ]]; then
		log "no fleet is running (scripts/fleetenv.sh up starts one)"
		return 1
	fi
	ip link show "$HOST_IF" >/dev/null 2>&1 || {
		log "$HOST_IF is missing"
		rc=1
	}
	pid_alive "$REGISTRY_FWD_PIDFILE" socat || {
		log "the registry forwarder is not running"
		rc=1
	}
	for name in $(existing_engines); do
		if engine_answers "$(engine_unix "$name")"; then log "engine $name answers on $(engine_unix "$name")"; else
			log "engine $name does not answer on $(engine_unix "$name")"
			rc=1
		fi
		if tls_answers "$name"; then log "engine $name answers on $(engine_tcp "$name") (TLS)"; else
			log "engine $name does not answer on $(engine_tcp "$name") (TLS)"
			rc=1
		fi
		if ssh_answers "$name"; then log "engine $name answers on $(engine_ssh "$name")"; else
			log "engine $name does not answer on $(engine_ssh "$name")"
			rc=1
		fi
		if ns_registry_answers "$name"; then log "the registry answers in $(engine_ns "$name")"; else
			log "the registry does not answer in $(engine_ns "$name")"
			rc=1
		fi
	done
	summary "$([[ $rc == 0 ]] && echo running || echo 'running, with problems')"
	return $rc
}

# stop_pidfiles PIDFILE:COMM:WHAT...: SIGTERM to each whose pid still runs COMM, then wait for all of them
# together, up to 60 s, then SIGKILL what is left.
stop_pidfiles() {
	local spec pidfile comm what pid pids=()
	for spec in "$@"; do
		IFS=: read -r pidfile comm what <<<"$spec"
		pid_alive "$pidfile" "$comm" || continue
		pid=$(cat "$pidfile")
		log "stopping $what (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	done
	local deadline=$((SECONDS + 60)) left
	while :; do
		left=()
		for pid in "${pids[@]}"; do running "$pid" && left+=("$pid"); done
		((${#left[@]} > 0)) || return 0
		if ((SECONDS >= deadline)); then
			log "pids ${left[*]} did not stop within 60 s; sending SIGKILL"
			kill -KILL "${left[@]}" 2>/dev/null || true
			return 0
		fi
		sleep 0.2
	done
}

# Processes left in an engine's namespace after its dockerd stopped (containerd and shims when dockerd was
# killed): found by their network namespace, killed by pid.
kill_ns_leftovers() {
	local ns=$1 target pid
	[[ -e $(ns_path "$ns") ]] || return 0
	target=$(stat -L -c '%i' "$(ns_path "$ns")")
	for pid in $(ls /proc | grep -E '^[0-9]+$'); do
		[[ $(stat -L -c '%i' "/proc/$pid/ns/net" 2>/dev/null) == "$target" ]] || continue
		log "killing leftover process $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) in $ns"
		kill -KILL "$pid" 2>/dev/null || true
	done
}

unmount_under() {
	local dir=$1 mnt
	[[ -d $dir ]] || return 0
	# Deepest first.
	for mnt in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$mnt" 2>/dev/null || true
	done
}

cmd_down() {
	need_root "down"
	exec 9>"$LOCK_FILE"
	flock -w 300 9 || die "another scripts/fleetenv.sh holds $LOCK_FILE"
	if [[ ! -d $RUN_DIR && ! -d $LIB_DIR && $(ip netns list | grep -c "^$NS_PREFIX") == 0 ]]; then
		log "no fleet to take down"
		rm -f "$ENV_FILE"
		return 0
	fi
	local name engines
	engines=$(existing_engines)
	if [[ -f $SWARM_FILE ]]; then
		# Workers first, then the manager; each only if its engine answers.
		for name in $(echo "$engines" | sort -r); do
			if engine_answers "$(engine_unix "$name")" && [[ $(swarm_state "$name") != inactive ]]; then
				log "engine $name leaves the swarm"
				DK_TIMEOUT=60 dk "$(engine_unix "$name")" swarm leave --force >/dev/null 2>&1 || true
			fi
		done
	fi
	# sshds and dockerds first (all at once: each dockerd stops its containers and containerd), then the
	# registry forwarders.
	local daemons=() forwarders=("$REGISTRY_FWD_PIDFILE:socat:registry forwarder") run
	for name in $engines; do
		run=$(engine_run "$name")
		daemons+=("$run/sshd.pid:sshd:sshd $name" "$run/docker.pid:dockerd:dockerd $name")
		forwarders+=("$run/registry-forward.pid:socat:registry forwarder $name")
	done
	stop_pidfiles "${daemons[@]}"
	stop_pidfiles "${forwarders[@]}"
	for name in $engines; do kill_ns_leftovers "$(engine_ns "$name")"; done
	# Namespaces named rfleet-* (ours by name); their veths go with them, rfleet0 with the hub.
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NS_PREFIX"); do
		kill_ns_leftovers "$ns"
		log "deleting namespace $ns"
		ip netns delete "$ns"
	done
	ip link del "$HOST_IF" >/dev/null 2>&1 || true
	if [[ -f $SSHD_PRIVSEP_MARK ]]; then rmdir "$SSHD_PRIVSEP" 2>/dev/null || true; fi
	unmount_under "$LIB_DIR"
	unmount_under "$RUN_DIR"
	rm -rf --one-file-system "$LIB_DIR" "$RUN_DIR"
	rm -f "$ENV_FILE"
	log "down"
}

case ${1:-up} in
up)
	shift || true
	cmd_up "$@"
	;;
status) cmd_status ;;
down) cmd_down ;;
-h | --help | help) sed -n '2,19p' "$0" ;;
*) die "unknown command '$1' (up [--swarm], status, down)" ;;
esac
