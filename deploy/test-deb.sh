#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine and checks it the way an operator
# meets it: files, owners and modes; the installed binary started as the unit starts it (the
# mobium user, the installed config, a sd_notify socket; systemd need not be PID 1); an edited
# config kept across a reinstall; and what `dpkg -r` and `dpkg --purge` leave behind.
#
# Usage (as root, on a Debian machine with cargo-deb: `cargo install cargo-deb`):
#   deploy/test-deb.sh            build with `cargo deb`, then test
#   MOBIUM_DEB=path.deb deploy/test-deb.sh   test an already built package
# It purges an installed mobium package first and leaves none behind.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
checks=0
fail() {
    echo "test-deb: FAIL: $*" >&2
    exit 1
}
ok() {
    checks=$((checks + 1))
    echo "test-deb: ok: $*"
}
# expect_stat PATH "MODE USER:GROUP"
expect_stat() {
    local got
    got=$(stat -c '%a %U:%G' "$1") || fail "$1 is missing"
    [[ $got == "$2" ]] || fail "$1 is $got, expected $2"
    ok "$1 $2"
}
absent() {
    [[ ! -e $1 ]] || fail "$1 is still there"
    ok "$1 is gone"
}

[[ $(id -u) -eq 0 ]] || fail "run as root (it installs a package)"
for tool in dpkg dpkg-deb setpriv curl python3 systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

# --- Build ----------------------------------------------------------------------------------
if [[ -n ${MOBIUM_DEB:-} ]]; then
    deb=$MOBIUM_DEB
else
    command -v cargo-deb >/dev/null || fail "cargo-deb is missing: cargo install cargo-deb"
    # One cargo at a time on a shared machine.
    run_cargo() { if command -v flock >/dev/null; then flock /tmp/mobium-cargo.lock "$@"; else "$@"; fi; }
    deb=$(cd "$repo" && run_cargo cargo deb -p mobium-homeserver --locked --strip | tail -n 1)
fi
[[ -f $deb ]] || fail "no package at '$deb'"
echo "test-deb: package $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  \1:/p'

if dpkg-query -W -f='${Status}' mobium 2>/dev/null | grep -q 'installed\|config-files'; then
    echo "test-deb: purging the mobium package already installed"
    dpkg --purge mobium >/dev/null
fi
getent passwd mobium >/dev/null && fail "a mobium user exists without the package; remove it first"

# --- Install --------------------------------------------------------------------------------
dpkg -i "$deb" </dev/null >/dev/null
[[ $(dpkg-query -W -f='${Status}' mobium) == "install ok installed" ]] || fail "not installed"
ok "dpkg -i installed mobium $(dpkg-query -W -f='${Version}' mobium)"

unit=/usr/lib/systemd/system/mobium.service
expect_stat /usr/bin/mobium "755 root:root"
expect_stat /etc/mobium "755 root:root"
expect_stat /etc/mobium/mobium.toml "640 root:mobium"
expect_stat /var/lib/mobium "700 mobium:mobium"
expect_stat "$unit" "644 root:root"
cmp -s "$unit" "$here/mobium.service" || fail "$unit differs from deploy/mobium.service"
ok "$unit is deploy/mobium.service"
cmp -s /etc/mobium/mobium.toml "$here/mobium.toml" || fail "the installed config differs"
ok "/etc/mobium/mobium.toml is deploy/mobium.toml"
dpkg-query -W -f='${Conffiles}\n' mobium | grep -q '^ /etc/mobium/mobium.toml ' ||
    fail "/etc/mobium/mobium.toml is not a conffile"
ok "/etc/mobium/mobium.toml is a dpkg conffile"

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd mobium)
[[ $uid -lt 1000 ]] || fail "mobium has uid $uid, not a system uid"
[[ $home == /var/lib/mobium ]] || fail "mobium's home is $home"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "mobium can log in ($shell)"
[[ $(getent group mobium | cut -d: -f3) == "$gid" ]] || fail "no mobium group"
ok "system user mobium (uid $uid, group mobium, home $home, shell $shell)"

/usr/bin/mobium --version | grep -q '^mobium ' || fail "mobium --version"
ok "$(/usr/bin/mobium --version)"

# The installed unit against the installed binary (verify, and the exposure figure).
MOBIUM_UNIT=$unit "$here/check-unit.sh" /usr/bin/mobium | sed 's/^/  /'
ok "installed unit: verify clean, exposure at most 2.0"

# --- Run it as the unit would ---------------------------------------------------------------
work=$(mktemp -d)
cleanup() {
    [[ -n ${server:-} ]] && kill "$server" 2>/dev/null
    [[ -n ${listener:-} ]] && kill "$listener" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The unit runs `serve --config /etc/mobium/mobium.toml` on 127.0.0.1:8443 (UDP 8448 for
# federation). Only if something on this machine already has a port is it moved, with SC_*
# variables as a `systemctl edit` drop-in would.
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
port=8443
fed_port=8448
overrides=()
if [[ -n $(ss -Htln "sport = :$port") ]]; then
    port=$(free_port tcp)
    overrides+=("SC_PORT=$port")
fi
if [[ -n $(ss -Huln "sport = :$fed_port") ]]; then
    fed_port=$(free_port udp)
    overrides+=("SC_FED_PORT=$fed_port")
fi
((${#overrides[@]})) && echo "test-deb: ports in use here, overriding: ${overrides[*]}"

# systemd's side of sd_notify: a datagram socket the service may write to.
sock=$work/notify.sock
python3 -u - "$sock" >"$work/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
while True:
    print(s.recv(4096).decode().replace("\n", " ").strip(), flush=True)
PY
listener=$!
for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.1; done
chmod 0755 "$work"

# User=mobium, NoNewPrivileges=yes, CapabilityBoundingSet= (empty), UMask=0077, a clean
# environment and / as the working directory, like the unit.
(
    cd /
    umask 0077
    exec setpriv --reuid=mobium --regid=mobium --init-groups --no-new-privs \
        --inh-caps=-all --bounding-set=-all -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET="$sock" "${overrides[@]}" \
        /usr/bin/mobium serve --config /etc/mobium/mobium.toml
) >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do
    grep -q 'READY=1' "$work/notify.log" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server exited"; }
    sleep 0.1
done
grep -q 'READY=1' "$work/notify.log" || { cat "$work/server.log" >&2; fail "no READY=1 in 30 s"; }
ok "READY=1: $(grep -m1 READY=1 "$work/notify.log")"
[[ $(ps -o user= -p "$server") == mobium ]] || fail "the server does not run as mobium"
ok "the server runs as mobium (pid $server)"

health=$(curl -fsS "http://127.0.0.1:$port/health") || fail "/health did not answer 200"
[[ $health == *'"database":"ok"'* ]] || fail "/health: $health"
ok "GET /health: $health"
setpriv --reuid=mobium --regid=mobium --init-groups -- env -i "${overrides[@]}" \
    /usr/bin/mobium health --config /etc/mobium/mobium.toml >/dev/null ||
    fail "mobium health --config /etc/mobium/mobium.toml"
ok "mobium health --config /etc/mobium/mobium.toml (as mobium)"

expect_stat /var/lib/mobium "700 mobium:mobium"
expect_stat /var/lib/mobium/server.key "600 mobium:mobium"
expect_stat /var/lib/mobium/mobium.db "600 mobium:mobium"
key_sum=$(sha256sum /var/lib/mobium/server.key | cut -d' ' -f1)

kill -TERM "$server"
status=0
wait "$server" || status=$?
server=
[[ $status -eq 0 ]] || { cat "$work/server.log" >&2; fail "exit status $status after SIGTERM"; }
grep -q 'STOPPING=1' "$work/notify.log" || fail "no STOPPING=1"
ok "SIGTERM: STOPPING=1, clean exit"

# --- An edited config survives a reinstall --------------------------------------------------
echo '# edited by test-deb' >>/etc/mobium/mobium.toml
dpkg -i "$deb" </dev/null >/dev/null
grep -q '^# edited by test-deb$' /etc/mobium/mobium.toml || fail "the reinstall replaced the config"
ok "reinstall kept the edited /etc/mobium/mobium.toml"
expect_stat /etc/mobium/mobium.toml "640 root:mobium"
[[ $(sha256sum /var/lib/mobium/server.key | cut -d' ' -f1) == "$key_sum" ]] ||
    fail "the reinstall changed the server key"
ok "reinstall kept the server key"

# --- dpkg -r: the program goes, the config, the data and the user stay ----------------------
dpkg -r mobium </dev/null >/dev/null
[[ $(dpkg-query -W -f='${Status}' mobium) == "deinstall ok config-files" ]] || fail "dpkg -r"
ok "dpkg -r: mobium is in state config-files"
absent /usr/bin/mobium
absent "$unit"
grep -q '^# edited by test-deb$' /etc/mobium/mobium.toml || fail "dpkg -r removed the config"
ok "dpkg -r kept /etc/mobium/mobium.toml"
[[ -f /var/lib/mobium/server.key && -f /var/lib/mobium/mobium.db ]] || fail "dpkg -r removed the data"
ok "dpkg -r kept /var/lib/mobium (server key and database)"
getent passwd mobium >/dev/null || fail "dpkg -r removed the user"
ok "dpkg -r kept the mobium user"

# --- dpkg --purge: nothing of it stays ------------------------------------------------------
dpkg --purge mobium </dev/null >/dev/null
dpkg-query -W -f='${Status}' mobium 2>/dev/null | grep -q 'installed\|config-files' &&
    fail "still known to dpkg after --purge"
ok "dpkg --purge: mobium is not installed"
absent /etc/mobium
absent /var/lib/mobium
getent passwd mobium >/dev/null && fail "the mobium user is still there"
getent group mobium >/dev/null && fail "the mobium group is still there"
ok "dpkg --purge removed the mobium user and group"
[[ -z $(dpkg-statoverride --list /etc/mobium/mobium.toml) ]] || fail "a statoverride is left"
ok "dpkg --purge removed the statoverride"

echo "test-deb: $checks passed, 0 failed"
