#!/usr/bin/env bash
# Container healthcheck: GET /healthz on the metrics port and succeed only on HTTP 200.
#
# The runtime image has no curl or wget; bash's /dev/tcp pseudo-device is enough for one HTTP/1.0 request to
# loopback. Usage: activity-sync-healthcheck [PORT] [PATH]  (defaults: $ACTIVITY_SYNC_HEALTH_PORT or 9090, /healthz)
set -euo pipefail

port="${1:-${ACTIVITY_SYNC_HEALTH_PORT:-9090}}"
path="${2:-/healthz}"

# A hung server must not hang the check: the whole exchange gets 2 seconds.
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 2 status_line <&3 || { echo "no response from 127.0.0.1:${port}${path}" >&2; exit 1; }
exec 3<&-

case "$status_line" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *) echo "unhealthy: ${status_line%$'\r'}" >&2; exit 1 ;;
esac
