#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Open MPI over the pagewire provider (pml cm, mtl ofi, "pagewire;ofi_rxm"):
# mpi_verify's point-to-point and collective checks, every byte compared.
#
#   mpi_run.sh local PROVIDER_DIR MPI_VERIFY      4 ranks on this host
#   mpi_run.sh netns PROVIDER_DIR MPI_VERIFY      4 ranks on 3 hosts: network
#                                                 namespaces on one bridge
#
# The netns form makes each namespace a host of its own name (pwh1..pwh3:
# its own UTS namespace, its own /etc/netns/<ns>/hosts) and starts Open
# MPI's daemons there through a plm_rsh_agent that enters the namespace,
# where a real cluster would use ssh. All traffic stays in the namespaces.
#
# Exit: 0 passed, 77 skipped (the reason printed), 1 failed.
set -uo pipefail
mode=$1 provdir=$2 prog=$3
skip() { echo "SKIP: $*"; exit 77; }
command -v mpirun >/dev/null || skip "no mpirun (Debian: openmpi-bin; make deps installs it)"
[ -x "$prog" ] || skip "no $prog (built when mpicc is found: libopenmpi-dev)"
work=$(mktemp -d)
mpi_args=(--allow-run-as-root -np 4
	-x FI_PROVIDER_PATH="$provdir"
	--mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include "pagewire;ofi_rxm"
	--mca mtl_base_verbose 10)
check() {
	local log=$1 rc=$2 want_hosts=$3
	grep -a "mtl:ofi:provider:\|mpi_verify" "$log"
	if [ "$rc" != 0 ]; then
		echo "--- mpirun exited $rc"; tail -40 "$log"
		echo "FAIL: mpirun exited $rc"; exit 1
	fi
	if ! grep -aq "^mpi_verify: OK: 4 ranks.*; hosts: $want_hosts\$" "$log"; then
		echo "--- output"; tail -40 "$log"
		echo "FAIL: no 'mpi_verify: OK' over hosts '$want_hosts'"; exit 1
	fi
	if [ "$(grep -ac 'mtl:ofi:provider: pagewire' "$log")" != 4 ]; then
		echo "FAIL: not every rank's mtl ofi chose the pagewire provider"; exit 1
	fi
	echo "PASS: $mode"
}

case $mode in
local)
	trap 'rm -rf "$work"' EXIT
	host=$(hostname)
	timeout 240 mpirun "${mpi_args[@]}" --oversubscribe "$prog" >"$work/log" 2>&1
	check "$work/log" $? "$host $host $host $host"
	;;
netns)
	[ "$(id -u)" = 0 ] || skip "network namespaces need root"
	command -v ip >/dev/null || skip "no ip (iproute2)"
	command -v unshare >/dev/null || skip "no unshare (util-linux)"
	p=pwm$$
	cleanup() {
		for n in 1 2 3; do
			ip netns del "${p}h$n" 2>/dev/null
			rm -rf "/etc/netns/${p}h$n"
		done
		ip netns del "${p}br" 2>/dev/null
		rm -rf "$work"
	}
	trap cleanup EXIT
	ip netns add "${p}br" || skip "cannot create a network namespace"
	ip -n "${p}br" link set lo up
	ip -n "${p}br" link add br0 type bridge || skip "no bridge support"
	ip -n "${p}br" link set br0 up
	for n in 1 2 3; do
		ns=${p}h$n
		ip netns add "$ns"
		ip link add "${p}v$n" netns "$ns" type veth peer name "${p}b$n" netns "${p}br" ||
			skip "no veth support"
		ip -n "${p}br" link set "${p}b$n" master br0
		ip -n "${p}br" link set "${p}b$n" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "10.78.$(($$ % 200)).$n/24" dev "${p}v$n"
		ip -n "$ns" link set "${p}v$n" up
		# ip netns exec binds this over /etc/hosts inside the namespace
		mkdir -p "/etc/netns/$ns"
		{
			echo "127.0.0.1 localhost"
			for m in 1 2 3; do echo "10.78.$(($$ % 200)).$m pwh$m"; done
		} >"/etc/netns/$ns/hosts"
	done
	cat >"$work/agent.sh" <<-EOF
		#!/bin/sh
		# Open MPI's rsh agent: "agent HOST COMMAND...", HOST = pwhN
		host=\$1; shift
		exec ip netns exec ${p}h\${host#pwh} unshare --uts sh -c "hostname \$host; \$*"
	EOF
	chmod +x "$work/agent.sh"
	printf 'pwh1 slots=2\npwh2 slots=1\npwh3 slots=1\n' >"$work/hosts"
	ip netns exec "${p}h1" unshare --uts sh -c 'hostname pwh1; exec "$@"' sh \
		timeout 240 mpirun "${mpi_args[@]}" --hostfile "$work/hosts" \
		--mca plm_rsh_agent "$work/agent.sh" \
		--mca oob_tcp_if_include "10.78.$(($$ % 200)).0/24" \
		"$prog" >"$work/log" 2>&1
	check "$work/log" $? "pwh1 pwh1 pwh2 pwh3"
	;;
*)
	echo "usage: mpi_run.sh local|netns PROVIDER_DIR MPI_VERIFY" >&2
	exit 1
	;;
esac
