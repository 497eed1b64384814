#!/usr/bin/env bash
# Checks deploy/mobium.service: `systemd-analyze verify` prints nothing and exits 0, and
# `systemd-analyze security --offline=true` rates its exposure at most 2.0. Runs without
# systemd as PID 1 (containers, CI). Usage: deploy/check-unit.sh [MOBIUM_BINARY]
# With a binary (e.g. target/release/mobium), verify checks the unit against it; without
# one, against an executable stand-in at /usr/bin/mobium (verify only checks it exists).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
unit="${MOBIUM_UNIT:-$here/mobium.service}"
max_exposure=2.0

command -v systemd-analyze >/dev/null || {
    echo "check-unit: systemd-analyze is missing (apt-get install systemd)" >&2
    exit 1
}

# verify resolves ExecStart= and the targets the unit names, so give it a root holding the
# host's system units, the binary and the unit where the package installs them.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/lib/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
if [[ $# -ge 1 ]]; then
    cp "$1" "$root/usr/bin/mobium"
else
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/mobium"
fi
chmod 0755 "$root/usr/bin/mobium"
cp "$unit" "$root/lib/systemd/system/mobium.service"

out=$(systemd-analyze verify --root="$root" /lib/systemd/system/mobium.service 2>&1) || {
    echo "check-unit: systemd-analyze verify failed:" >&2
    echo "$out" >&2
    exit 1
}
if [[ -n "$out" ]]; then
    echo "check-unit: systemd-analyze verify is not clean:" >&2
    echo "$out" >&2
    exit 1
fi
echo "check-unit: systemd-analyze verify: clean"

report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
if [[ -z "$exposure" ]]; then
    echo "check-unit: no exposure figure in:" >&2
    echo "$report" >&2
    exit 1
fi
# The settings still counted against the unit (a network server cannot drop the network).
grep '^✗' <<<"$report" | sed 's/  */ /g' || true
echo "check-unit: systemd-analyze security exposure: $exposure (at most $max_exposure)"
if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e > m) }'; then
    echo "check-unit: exposure $exposure is above $max_exposure" >&2
    exit 1
fi
