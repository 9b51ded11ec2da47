#!/usr/bin/env bash
# Installs the real peers the tests run against (Debian packages): strongSwan charon + swanctl
# (with kernel-libipsec), tshark, ike-scan, nftables (a NAT inside a test namespace), and chromium (the HTML
# report is rendered in it, headless).
# Idempotent: does nothing when they are present.
set -euo pipefail
need=()
[ -x /usr/lib/ipsec/charon ] || need+=(strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins)
command -v swanctl >/dev/null 2>&1 || need+=(strongswan-swanctl)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v ike-scan >/dev/null 2>&1 || need+=(ike-scan)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: need root to install: ${need[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${need[*]}"
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
