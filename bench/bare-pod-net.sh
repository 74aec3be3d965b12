#!/usr/bin/env bash
# bench/pod-start.ts's reference (c): a pod network made by hand, the way vmlet makes one, with
# the same commands (ip netns, the node's CNI plugins, the same ip/tc lines, dnsmasq), but
# from one shell per step instead of from vmlet's Node process.
#   bare-pod-net.sh up     NS ID CNI_ARGS BIN_DIR WORK_DIR PLUGIN…   (WORK_DIR/plugin-N.json: each plugin's config;
#                                                                     WORK_DIR/wire.batch: vmlet's wiringBatch lines)
#   bare-pod-net.sh attach NS TAP IP_LINES TC_LINES
#   bare-pod-net.sh down   NS ID CNI_ARGS BIN_DIR WORK_DIR PLUGIN…
# `up` leaves the last plugin's result in WORK_DIR/result.json and runs dnsmasq from
# WORK_DIR/dnsmasq.conf (its pid file named there).
set -euo pipefail
cmd=$1
shift

# cni COMMAND NS ID CNI_ARGS BIN_DIR WORK_DIR PLUGIN…: the plugins in order (ADD) or reverse (DEL),
# each given the one before's result as prevResult, as libcni does.
cni() {
  local command=$1 ns=$2 id=$3 args=$4 bin=$5 work=$6
  shift 6
  local types=("$@") order=() res='' i conf out
  if [ "$command" = DEL ]; then
    res=$(cat "$work/result.json")
    for ((i = ${#types[@]} - 1; i >= 0; i--)); do order+=("$i"); done
  else
    for ((i = 0; i < ${#types[@]}; i++)); do order+=("$i"); done
  fi
  for i in "${order[@]}"; do
    conf=$(cat "$work/plugin-$i.json")
    [ -n "$res" ] && conf="${conf%\}},\"prevResult\":$res}"
    out=$(printf '%s' "$conf" | CNI_COMMAND=$command CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$bin CNI_ARGS=$args "$bin/${types[$i]}")
    [ "$command" = ADD ] && res=$out
  done
  if [ "$command" = ADD ]; then printf '%s' "$res" > "$work/result.json"; fi
}

case $cmd in
  up)
    ns=$1 work=$5
    ip netns add "$ns"
    cni ADD "$@"
    # vmlet's wiring (src/net/pod-network.ts wiringBatch): read eth0, then strip it, in one ip -batch.
    ip -n "$ns" -j -batch "$work/wire.batch" > "$work/eth0.json"
    nsenter --net="/run/netns/$ns" /usr/sbin/dnsmasq --conf-file="$work/dnsmasq.conf"
    ;;
  attach)
    ns=$1 tap=$2
    ip link set "$tap" netns "$ns"
    printf '%s' "$3" | ip -n "$ns" -batch -
    printf '%s' "$4" | tc -n "$ns" -batch -
    ;;
  down)
    ns=$1 work=$5
    if [ -f "$work/dnsmasq.pid" ]; then kill "$(cat "$work/dnsmasq.pid")" 2> /dev/null || true; fi
    cni DEL "$@" || true
    ip netns delete "$ns" 2> /dev/null || true
    ;;
  *)
    echo "usage: $0 up|attach|down …" >&2
    exit 2
    ;;
esac
