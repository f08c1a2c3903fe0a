#!/usr/bin/env bash
# Runs Kamailio (Debian's kamailio 5.6) in the foreground in front of callml nodes.
#
#   contrib/kamailio/run.sh LISTEN_ADDR NODE_SIP_ADDR...
#   contrib/kamailio/run.sh 0.0.0.0:5060 10.0.0.11:5060 10.0.0.12:5060
#
# LISTEN_ADDR is where phones and trunks send SIP (UDP); each NODE_SIP_ADDR is a callml
# node's --sip address. The dispatcher list is made from the arguments in a temporary
# directory, removed when Kamailio stops.
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $0 LISTEN_ADDR NODE_SIP_ADDR..." >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kamailio="${KAMAILIO:-/usr/sbin/kamailio}"
if [ ! -x "$kamailio" ]; then
  echo "$kamailio not found: install the Debian package kamailio" >&2
  exit 1
fi
listen="$1"
shift
work="$(mktemp -d -t callml-kamailio.XXXXXX)"
trap 'rm -rf "$work"' EXIT
for node in "$@"; do
  echo "1 sip:$node" >>"$work/dispatcher.list"
done
exec_args=(
  -f "$here/kamailio.cfg"
  -A "LISTEN=udp:$listen"
  -A "DISPATCHER_LIST=\"$work/dispatcher.list\""
  -DD -E -w "$work" -Y "$work"
)
"$kamailio" "${exec_args[@]}"
