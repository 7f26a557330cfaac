#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, only those that are missing.
# Real servers, not stand-ins: nginx, Redis, etcd, Prometheus, HAProxy, wrk, Chromium.
set -euo pipefail

want=(python3-venv nginx-light redis-server etcd-server etcd-client prometheus haproxy wrk chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# python3-venv is only needed where the system python lacks venv (pyenv builds have it).
if python3 -c "import venv, ensurepip" 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts some daemons on install; the tests start their own on free ports.
for svc in nginx redis-server etcd prometheus haproxy; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
