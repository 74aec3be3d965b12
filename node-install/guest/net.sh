# shellcheck shell=sh
# vmlet guest kit: the pod network on the guest's NIC, sourced by /init (from the kernel command
# line at boot) and by the agent's setup_pod (a VM taken from the warm pool gets its pod's
# network only when a pod claims it). Defines vmlet_net; returns non-zero when a step failed.
#
# Arguments (the kernel command line's vmlet.* words; others are ignored):
#   vmlet.ip=<addr>/<prefix>      address on the NIC (IPv4 or IPv6; repeatable)
#   vmlet.gw=<ip>                 default route, one per family (repeatable)
#   vmlet.route=<dst>/<len>@<gw>  extra route; empty gw ("<dst>/<len>@") = on-link (repeatable)
#   vmlet.mtu=<n>                 NIC MTU
#   vmlet.mac=<mac>               NIC MAC (the pod's eth0's, for a VM booted before its pod)
#   vmlet.nonet=1                 leave the NIC down (a pool VM: it has no pod yet)
# Prints VMLET-NET <nic> <addresses> when it configured something.

vmlet_net() {
  _ips='' _gws='' _routes='' _mtu='' _mac='' _down='' _fail=0
  for _p in "$@"; do
    case "$_p" in
      vmlet.ip=*) _ips="$_ips ${_p#*=}" ;;
      vmlet.gw=*) _gws="$_gws ${_p#*=}" ;;
      vmlet.route=*) _routes="$_routes ${_p#*=}" ;;
      vmlet.mtu=*) _mtu=${_p#*=} ;;
      vmlet.mac=*) _mac=${_p#*=} ;;
      vmlet.nonet=1) _down=1 ;;
    esac
  done
  [ -n "$_down" ] && return 0

  _nic=''
  for _n in /sys/class/net/*; do
    _n=${_n##*/}
    [ "$_n" = lo ] || { _nic=$_n; break; }
  done
  if [ -z "$_nic" ]; then
    [ -n "$_ips" ] && { echo "vmlet-init: no network interface for vmlet.ip=$_ips"; return 1; }
    return 0
  fi
  _fam() { case "$1" in *:*) echo -6 ;; *) echo -4 ;; esac; }
  _warn() { echo "vmlet-init: $*"; _fail=1; }
  # Static addresses only: no duplicate address detection (the host allocated them).
  echo 0 > "/proc/sys/net/ipv6/conf/$_nic/accept_dad"
  [ -n "$_mac" ] && { ip link set dev "$_nic" address "$_mac" || _warn "mac $_mac on $_nic failed"; }
  [ -n "$_mtu" ] && { ip link set dev "$_nic" mtu "$_mtu" || _warn "mtu $_mtu on $_nic failed"; }
  ip link set dev "$_nic" up || _warn "$_nic up failed"
  for _a in $_ips; do ip "$(_fam "$_a")" addr add "$_a" dev "$_nic" || _warn "address $_a on $_nic failed"; done
  for _g in $_gws; do
    _f=$(_fam "$_g")
    # A gateway outside every prefix (IPv4 /32 from a ptp-style CNI) needs an on-link route
    # to it first; "onlink" on the default route covers the rest.
    for _a in $_ips; do
      [ "$_f" = -4 ] && [ "${_a#*/}" = 32 ] && { ip -4 route replace "$_g" dev "$_nic" scope link; break; }
    done
    ip "$_f" route replace default via "$_g" dev "$_nic" onlink || _warn "default route via $_g failed"
  done
  for _r in $_routes; do
    _dst=${_r%@*} _via=${_r#*@}
    [ "$_dst" = "$_r" ] && { _warn "vmlet.route=$_r: no @"; continue; }
    if [ -n "$_via" ]; then
      ip "$(_fam "$_dst")" route replace "$_dst" via "$_via" dev "$_nic" onlink || _warn "route $_r failed"
    else
      ip "$(_fam "$_dst")" route replace "$_dst" dev "$_nic" scope link || _warn "route $_r failed"
    fi
  done
  [ -n "$_ips$_gws$_routes" ] && echo "VMLET-NET $_nic$_ips"
  return $_fail
}
