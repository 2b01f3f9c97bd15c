#!/usr/bin/env bash
# The real test environment of reconciler: a dockerd on its own socket and data root, a registry on
# 127.0.0.1:5000, swarm mode, the busybox base image, and the project venv.
#
#   scripts/testenv.sh [up]     provision and start what is missing (idempotent; the default)
#   scripts/testenv.sh status   say what is running, change nothing
#   scripts/testenv.sh down     stop what this script started (registry, dockerd after leaving swarm);
#                               removes no data
#
# Runs as root on Debian 12. Writes <repo>/.testenv/env (`export DOCKER_HOST=...`).
# Environment: DOCKER_HOST (used instead of our own dockerd when it answers), PYTHON (interpreter for a new
# venv, default python3), RECONCILER_TESTENV_SKIP_VENV=1 (leave the venv alone),
# RECONCILER_TESTENV_RUN_DIR / RECONCILER_TESTENV_LIB_DIR (state directories; for testing this script).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR=${RECONCILER_TESTENV_RUN_DIR:-/run/reconciler-test}
LIB_DIR=${RECONCILER_TESTENV_LIB_DIR:-/var/lib/reconciler-test}
OWN_HOST="unix://$RUN_DIR/docker.sock"
DOCKERD_PIDFILE="$RUN_DIR/docker.pid"
DOCKERD_LOG="$RUN_DIR/dockerd.log"
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_CONFIG="$LIB_DIR/registry.yml"
REGISTRY_PIDFILE="$RUN_DIR/registry.pid"
REGISTRY_LOG="$RUN_DIR/registry.log"
BASE_REPO=reconciler/busybox
BASE_TAG=1.35
BASE_IMAGE="$REGISTRY_ADDR/$BASE_REPO:$BASE_TAG"
VENV="$REPO/.venv"
VENV_STAMP="$VENV/.reconciler-testenv-stamp"
ENV_FILE="$REPO/.testenv/env"
# Set when this script initialised swarm mode on an engine it did not start, so `down` can undo only that.
SWARM_MARK="$RUN_DIR/swarm-initialised-on"

# The Debian CLI matches the 20.10 engine; a newer CLI elsewhere in PATH negotiates down and works too.
if [[ -x /usr/bin/docker ]]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=docker; fi

log() { printf 'testenv: %s\n' "$*" >&2; }
die() {
	printf 'testenv: ERROR: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "$1 needs root (run as root or with sudo)"
}

# dk HOST ARGS...: the docker CLI against one engine, bounded in time so a hung socket cannot hang us.
dk() {
	local host=$1
	shift
	DOCKER_HOST="$host" timeout "${DK_TIMEOUT:-120}" "$DOCKER_CLI" "$@"
}

engine_answers() {
	[[ -n $1 ]] && DK_TIMEOUT=10 dk "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# http_status URL [ACCEPT]: prints the HTTP status code, 000 when nothing answers.
http_status() {
	local accept=${2:-*/*}
	if command -v curl >/dev/null 2>&1; then
		curl -s -o /dev/null -m 5 -w '%{http_code}' -H "Accept: $accept" "$1" || true
	else
		python3 - "$1" "$accept" <<-'EOF' || echo 000
			import sys, urllib.error, urllib.request
			req = urllib.request.Request(sys.argv[1], headers={"Accept": sys.argv[2]})
			try:
			    print(urllib.request.urlopen(req, timeout=5).status)
			except urllib.error.HTTPError as e:
			    print(e.code)
			except Exception:
			    print("000")
		EOF
	fi
}

registry_answers() { [[ $(http_status "http://$REGISTRY_ADDR/v2/") == 200 ]]; }

# pid_alive PIDFILE COMM: the pid in PIDFILE runs a program named COMM (a recycled pid is not ours).
pid_alive() {
	local pid
	[[ -f $1 ]] && pid=$(cat "$1") && [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
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

# ---------------------------------------------------------------------------------------------- packages
install_packages() {
	local missing=() pkg
	# chromium + chromium-driver: the status page's browser test; tmux: the live view's terminal test;
	# docker-compose: the Compose adoption test; zsh: the zsh completion test; git, openssh-client/-server: the git
	# source's tests (http-backend, ssh signing keys, an sshd on 127.0.0.1); gnupg: GPG-signed commits; age: encrypted
	# files made by the real tool
	for pkg in docker.io docker-registry busybox-static iptables nftables iproute2 ca-certificates \
		chromium chromium-driver tmux docker-compose zsh git openssh-client openssh-server gnupg age; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	command -v python3 >/dev/null 2>&1 || missing+=(python3)
	# Only Debian's interpreter needs python3-venv; a pyenv/other python brings venv and ensurepip itself.
	if [[ ! -x $VENV/bin/python ]] && ! "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
		missing+=(python3-venv)
	fi
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	need_root "installing ${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Keep the packages' own services (docker.service, docker-registry.service on :5000) from starting on
	# install: a second dockerd sharing docker0 and iptables chains with ours, or a registry with another
	# config on our port, is not what we want. policy-rc.d is honoured by invoke-rc.d and deb-systemd-invoke.
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# temporary, from reconciler scripts/testenv.sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	((own_policy == 0)) || rm -f "$policy"
	((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
}

# ---------------------------------------------------------------------------------------------- venv
ensure_venv() {
	[[ ${RECONCILER_TESTENV_SKIP_VENV:-0} == 1 ]] && return 0
	local want
	want=$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)
	if [[ ! -x $VENV/bin/python ]]; then
		log "creating venv $VENV"
		"${PYTHON:-python3}" -m venv "$VENV"
	fi
	# The stamp is the pyproject hash: an unchanged pyproject with an importable package needs no pip run.
	# A changed one (new dependency, new entry point) is reinstalled, since editable installs only pick up
	# entry points at install time.
	if [[ -f $VENV_STAMP && $(cat "$VENV_STAMP") == "$want" ]] &&
		"$VENV/bin/python" -c 'import reconciler, docker, pytest' >/dev/null 2>&1 &&
		[[ -x $VENV/bin/ruff ]]; then
		return 0
	fi
	log "installing the project into $VENV (pip install -e '.[test]')"
	(cd "$REPO" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q --no-input -e '.[test]')
	echo "$want" >"$VENV_STAMP"
}

# ---------------------------------------------------------------------------------------------- dockerd
start_dockerd() {
	need_root "starting dockerd"
	mkdir -p "$RUN_DIR" "$LIB_DIR/docker"
	if pid_alive "$DOCKERD_PIDFILE" dockerd; then
		log "our dockerd (pid $(cat "$DOCKERD_PIDFILE")) is running but not answering yet; waiting"
	else
		log "starting dockerd on $OWN_HOST (data root $LIB_DIR/docker)"
		# No --containerd: dockerd then uses a running system containerd (/run/containerd/containerd.sock) or
		# starts its own under the exec root. Our own containerd namespace keeps our containers apart from a
		# system dockerd that may share that containerd. The iptables backend is whatever `iptables` is in
		# PATH (the Debian default, nf_tables); we never switch it.
		setsid nohup dockerd \
			--host="$OWN_HOST" \
			--data-root="$LIB_DIR/docker" \
			--exec-root="$RUN_DIR/exec" \
			--pidfile="$DOCKERD_PIDFILE" \
			--containerd-namespace=reconciler-test \
			--containerd-plugins-namespace=reconciler-test-plugins \
			</dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
	fi
	if ! wait_for 90 "dockerd" engine_answers "$OWN_HOST"; then
		log "dockerd did not answer within 90 s; last lines of $DOCKERD_LOG:"
		tail -n 40 "$DOCKERD_LOG" >&2 || true
		exit 1
	fi
}

choose_engine() {
	if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != "$OWN_HOST" ]]; then
		if engine_answers "$DOCKER_HOST"; then
			log "using the engine at DOCKER_HOST=$DOCKER_HOST"
			ENGINE=$DOCKER_HOST
			return
		fi
		log "DOCKER_HOST=$DOCKER_HOST does not answer; using our own dockerd instead"
	fi
	ENGINE=$OWN_HOST
	engine_answers "$ENGINE" && return 0
	if engine_answers unix:///var/run/docker.sock; then
		log "WARNING: a system dockerd answers on /var/run/docker.sock; ours will share docker0 and the iptables"
		log "  chains with it. Stop it, or set DOCKER_HOST=unix:///var/run/docker.sock to test against it."
	fi
	start_dockerd
}

# Another dockerd started with `--bridge=none` deletes the host's docker0 (dockerd's removeDefaultBridgeInterface),
# and ours does not notice: every container start on the default `bridge` network then fails with "could not
# find bridge docker0". Recreating the link with the engine's own gateway address restores it without a
# restart (the bridge driver and Docker's iptables rules find the bridge by name).
repair_default_bridge() {
	[[ $ENGINE == "$OWN_HOST" ]] || return 0
	local name gateway subnet
	name=$(dk "$ENGINE" network inspect bridge \
		--format '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null) || return 0
	[[ -n $name ]] && ! ip link show "$name" >/dev/null 2>&1 || return 0
	gateway=$(dk "$ENGINE" network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')
	subnet=$(dk "$ENGINE" network inspect bridge --format '{{(index .IPAM.Config 0).Subnet}}')
	log "WARNING: the default bridge $name of our dockerd is gone (deleted by someone else); recreating" \
		"it as $gateway/${subnet#*/}"
	need_root "recreating $name"
	ip link add "$name" type bridge
	ip addr add "$gateway/${subnet#*/}" dev "$name"
	ip link set "$name" up
}

# ---------------------------------------------------------------------------------------------- registry
start_registry() {
	if registry_answers; then
		return 0
	fi
	need_root "starting the registry"
	mkdir -p "$RUN_DIR" "$LIB_DIR/registry"
	if ! pid_alive "$REGISTRY_PIDFILE" docker-registry; then
		cat >"$REGISTRY_CONFIG" <<-EOF
			# written by scripts/testenv.sh
			version: 0.1
			log:
			  level: warn
			storage:
			  filesystem:
			    rootdirectory: $LIB_DIR/registry
			  delete:
			    enabled: true
			http:
			  addr: $REGISTRY_ADDR
		EOF
		log "starting docker-registry on $REGISTRY_ADDR"
		setsid nohup docker-registry serve "$REGISTRY_CONFIG" </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
		echo $! >"$REGISTRY_PIDFILE"
	fi
	if ! wait_for 30 "registry" registry_answers; then
		log "the registry did not answer within 30 s; last lines of $REGISTRY_LOG:"
		tail -n 40 "$REGISTRY_LOG" >&2 || true
		exit 1
	fi
}

# ---------------------------------------------------------------------------------------------- swarm
swarm_state() { dk "$ENGINE" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

ensure_swarm() {
	local state
	state=$(swarm_state)
	case $state in
	active) return 0 ;;
	inactive)
		log "initialising swarm mode (needed for overlay networks)"
		dk "$ENGINE" swarm init --advertise-addr 127.0.0.1 >/dev/null
		[[ $ENGINE == "$OWN_HOST" ]] || echo "$ENGINE" >"$SWARM_MARK"
		;;
	*) die "swarm is in state '$state' on $ENGINE; fix it by hand (docker swarm leave --force) and rerun" ;;
	esac
}

# ---------------------------------------------------------------------------------------------- base image
registry_has_base() {
	local accept=application/vnd.docker.distribution.manifest.v2+json
	[[ $(http_status "http://$REGISTRY_ADDR/v2/$BASE_REPO/manifests/$BASE_TAG" "$accept") == 200 ]]
}

ensure_base_image() {
	if ! registry_has_base; then
		log "building and pushing $BASE_IMAGE"
		local ctx applet
		ctx=$(mktemp -d)
		# A FROM-scratch image cannot RUN anything, so the whole root file system, applet symlinks included,
		# is prepared here and copied in one layer. Links are relative, so they resolve inside the image.
		mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/var/www" "$ctx/rootfs/root"
		cp "$(readlink -f /bin/busybox)" "$ctx/rootfs/bin/busybox"
		for applet in $("$ctx/rootfs/bin/busybox" --list); do
			[[ $applet == busybox ]] || ln -s busybox "$ctx/rootfs/bin/$applet"
		done
		ln -s bin "$ctx/rootfs/sbin"
		mkdir -p "$ctx/rootfs/usr"
		ln -s ../bin "$ctx/rootfs/usr/bin"
		ln -s ../bin "$ctx/rootfs/usr/sbin"
		chmod 1777 "$ctx/rootfs/tmp"
		printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
			>"$ctx/rootfs/etc/passwd"
		printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
		cat >"$ctx/Dockerfile" <<-'EOF'
			FROM scratch
			COPY rootfs/ /
			ENV PATH=/bin
			LABEL org.opencontainers.image.title="reconciler test base (static busybox)"
			CMD ["sh"]
		EOF
		# The classic builder: no buildx needed, works with the 20.10 engine.
		DOCKER_BUILDKIT=0 dk "$ENGINE" build -q -t "$BASE_IMAGE" "$ctx" >/dev/null
		rm -rf "$ctx"
		dk "$ENGINE" push "$BASE_IMAGE" >/dev/null
		registry_has_base || die "pushed $BASE_IMAGE but the registry does not serve its manifest"
	fi
	# Tests create containers from it without pulling first, so the engine keeps a local copy too.
	if ! dk "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
		log "pulling $BASE_IMAGE into the engine"
		dk "$ENGINE" pull -q "$BASE_IMAGE" >/dev/null
	fi
}

# ---------------------------------------------------------------------------------------------- commands
write_env_file() {
	mkdir -p "$(dirname "$ENV_FILE")"
	local tmp="$ENV_FILE.tmp.$$"
	cat >"$tmp" <<-EOF
		# written by scripts/testenv.sh; source it to talk to the test engine
		export DOCKER_HOST=$ENGINE
		export RECONCILER_TEST_REGISTRY=$REGISTRY_ADDR
		export RECONCILER_TEST_BASE_IMAGE=$BASE_IMAGE
	EOF
	mv "$tmp" "$ENV_FILE"
}

summary() {
	local title=$1 info
	info=$(dk "$ENGINE" info --format \
		'engine {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}, swarm {{.Swarm.LocalNodeState}}' \
		2>/dev/null || echo "engine not answering")
	cat <<-EOF
		testenv: $title
		  DOCKER_HOST   $ENGINE ($info)
		  iptables      $(iptables --version 2>/dev/null || echo missing)
		  registry      http://$REGISTRY_ADDR (/v2/ status $(http_status "http://$REGISTRY_ADDR/v2/"))
		  base image    $BASE_IMAGE
		  venv          $VENV
		  env file      $ENV_FILE   (source it: . .testenv/env)
	EOF
}

cmd_up() {
	# Several developers' test runs may start at once: one provisioner at a time.
	mkdir -p "$RUN_DIR" 2>/dev/null || true
	if [[ -w $RUN_DIR ]]; then
		# The daemons started below must not inherit fd 9 (`9>&-`), or they would hold the lock forever.
		exec 9>"$RUN_DIR/testenv.lock"
		if ! flock -n 9; then
			log "waiting for another scripts/testenv.sh (lock $RUN_DIR/testenv.lock)"
			flock -w 900 9 || die "another scripts/testenv.sh held $RUN_DIR/testenv.lock for 15 min"
		fi
	fi
	install_packages
	ensure_venv
	choose_engine
	repair_default_bridge
	start_registry
	ensure_swarm
	ensure_base_image
	write_env_file
	summary ready
}

cmd_status() {
	ENGINE=$OWN_HOST
	if [[ -n ${DOCKER_HOST:-} ]] && engine_answers "$DOCKER_HOST"; then ENGINE=$DOCKER_HOST; fi
	local rc=0
	if engine_answers "$ENGINE"; then log "engine $ENGINE answers"; else
		log "engine $ENGINE does not answer"
		rc=1
	fi
	if registry_answers; then log "registry $REGISTRY_ADDR answers"; else
		log "registry $REGISTRY_ADDR does not answer"
		rc=1
	fi
	if ((rc == 0)); then summary running; fi
	return $rc
}

stop_pid() {
	local pidfile=$1 what=$2 pid
	pid=$(cat "$pidfile")
	log "stopping $what (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 60))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$what did not stop within 60 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
}

cmd_down() {
	need_root "down"
	exec 9>"$RUN_DIR/testenv.lock"
	flock -w 300 9 || die "another scripts/testenv.sh holds $RUN_DIR/testenv.lock"
	if pid_alive "$REGISTRY_PIDFILE" docker-registry; then
		stop_pid "$REGISTRY_PIDFILE" "the registry"
	else
		log "no registry started by this script is running"
	fi
	rm -f "$REGISTRY_PIDFILE"
	if [[ -f $SWARM_MARK ]]; then
		local other
		other=$(cat "$SWARM_MARK")
		if engine_answers "$other"; then
			log "leaving the swarm this script created on $other"
			dk "$other" swarm leave --force >/dev/null || true
		fi
		rm -f "$SWARM_MARK"
	fi
	if pid_alive "$DOCKERD_PIDFILE" dockerd; then
		if engine_answers "$OWN_HOST"; then
			log "leaving swarm mode on our dockerd"
			dk "$OWN_HOST" swarm leave --force >/dev/null 2>&1 || true
		fi
		stop_pid "$DOCKERD_PIDFILE" "our dockerd"
		rm -f "$DOCKERD_PIDFILE"
	else
		log "no dockerd started by this script is running"
	fi
	rm -f "$ENV_FILE"
	log "down; data kept in $LIB_DIR (remove it by hand to start from scratch)"
}

case ${1:-up} in
up) cmd_up ;;
status) cmd_status ;;
down) cmd_down ;;
-h | --help | help) sed -n '2,12p' "$0" ;;
*) die "unknown command '$1' (up, status, down)" ;;
esac
