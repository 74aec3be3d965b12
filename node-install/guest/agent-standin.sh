#!/bin/sh
# shellcheck shell=sh
# Stand-in for /sbin/vmlet-agent, put in the kit only when the Go agent cannot be built
# (src/guest/agent/build.sh missing) or VMLET_GUEST_AGENT=standin: it speaks no protocol,
# it only prints the ready marker and waits, so the kit's boot can be tested on its own.
echo "VMLET-AGENT-READY standin"
while :; do sleep 3600; done
