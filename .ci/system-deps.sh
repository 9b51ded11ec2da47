#!/usr/bin/env bash
# Installs the real peers the tests run against (Debian packages): strongSwan charon + swanctl
# (with kernel-libipsec), tshark, ike-scan, nftables (a NAT inside a test namespace), ping (through a real ESP
# tunnel into the emulated VPC), and chromium (the HTML
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
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# libreswan's pluto (a second IKE implementation for the conformance tests). Its package conflicts with
# strongSwan's, so it is never installed: it is downloaded and unpacked into LIBRESWAN_ROOT, and only its
# runtime libraries are installed (they do not conflict).
LIBRESWAN_ROOT=/opt/awsnetemu-libreswan
for lib in libldns3 libevent-pthreads-2.1-7 libevent-core-2.1-7 libunbound8 libcurl3-nss libnss3-tools; do
    dpkg -s "$lib" >/dev/null 2>&1 || need+=("$lib")
done
fetch_libreswan=0
[ -x "$LIBRESWAN_ROOT/usr/libexec/ipsec/pluto" ] || fetch_libreswan=1
if [ ${#need[@]} -eq 0 ] && [ "$fetch_libreswan" = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: need root to install: ${need[*]}" >&2
    exit 1
fi
[ ${#need[@]} -eq 0 ] || echo "system-deps: installing ${need[*]}"
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$fetch_libreswan" = 1 ]; then
    echo "system-deps: unpacking libreswan into $LIBRESWAN_ROOT"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -qq libreswan >/dev/null 2>&1)
    mkdir -p "$LIBRESWAN_ROOT"
    dpkg -x "$tmp"/libreswan_*.deb "$LIBRESWAN_ROOT"
    rm -rf "$tmp"
fi
