#!/usr/bin/env bash
# Builds Debian packages of Fleetgate with plain `dpkg-deb --build` (no cargo-deb):
#
#   target/debian/fleetgate_<version>_<arch>.deb
#       /usr/bin/fleetgate, /usr/lib/systemd/system/fleetgate.service, docs and an example
#       configurator input; postinst creates the fleetspeak user and /var/lib/fleetgate.
#   target/debian/fleetgate-fleetspeak-compat_<version>_<arch>.deb   (only with --compat)
#       /usr/bin/fleetspeak-server → fleetgate, /usr/bin/fleetspeak-config (runs
#       `fleetgate config`), fleetspeak-server.service → fleetgate.service. It conflicts with
#       and replaces the real fleetspeak-server package.
#
# Usage: packaging/build-deb.sh [--compat] [--no-build] [--bin PATH] [--out DIR] [--fast]
#   --no-build   package the existing target/release/fleetgate
#   --bin PATH   package this binary instead (implies --no-build; the tests package the
#                debug build)
#   --out DIR    write the packages to DIR (default target/debian)
#   --fast       gzip -1 instead of dpkg-deb's default xz: seconds instead of a minute for a
#                debug binary
set -euo pipefail

usage="usage: $0 [--compat] [--no-build] [--bin PATH] [--out DIR] [--fast]"
cd "$(dirname "$0")/.."
compat=false
build=true
bin=target/release/fleetgate
out=target/debian
compress=()
while [ $# -gt 0 ]; do
    case "$1" in
        --compat) compat=true ;;
        --no-build) build=false ;;
        --bin) bin=${2:?$usage}; build=false; shift ;;
        --out) out=${2:?$usage}; shift ;;
        --fast) compress=(-Zgzip -z1) ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done

if $build; then
    cargo build --release -p fleetgate-server
fi
[ -x "$bin" ] || { echo "$bin is missing; run without --no-build" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
mkdir -p "$out"

# control <package> <relations> <description-file-or-empty>
control() {
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@RELATIONS@/$2/" \
        packaging/debian/control.in | sed "1s/.*/Package: $1/"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# --- fleetgate ---------------------------------------------------------------------------
root="$stage/fleetgate"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" \
    "$root/usr/share/doc/fleetgate/examples"
install -m 0755 "$bin" "$root/usr/bin/fleetgate"
strip --strip-unneeded "$root/usr/bin/fleetgate" 2>/dev/null || true
install -m 0644 packaging/systemd/fleetgate.service "$root/usr/lib/systemd/system/"
install -m 0644 docs/GUIDE.md README.md "$root/usr/share/doc/fleetgate/"
install -m 0644 packaging/configurator.config configs/server.services.config \
    "$root/usr/share/doc/fleetgate/examples/"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
    "$root/DEBIAN/"
control fleetgate "" >"$root/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)" >>"$root/DEBIAN/control"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$out/fleetgate_${version}_${arch}.deb"

# --- fleetgate-fleetspeak-compat -----------------------------------------------------------
if $compat; then
    root="$stage/compat"
    install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system"
    ln -s fleetgate "$root/usr/bin/fleetspeak-server"
    printf '#!/bin/sh\n# fleetspeak-config, as provided by Fleetgate.\nexec /usr/bin/fleetgate config "$@"\n' \
        >"$root/usr/bin/fleetspeak-config"
    chmod 0755 "$root/usr/bin/fleetspeak-config"
    # A unit symlink under another name is an alias: fleetspeak-server.service = fleetgate.service.
    ln -s fleetgate.service "$root/usr/lib/systemd/system/fleetspeak-server.service"
    relations="Depends: fleetgate (= $version)\\nProvides: fleetspeak-server\\nConflicts: fleetspeak-server\\nReplaces: fleetspeak-server\\n"
    control fleetgate-fleetspeak-compat "$relations" |
        sed -e '/^Depends: adduser/d' \
            -e 's/^Description: .*/Description: Fleetgate under the fleetspeak-server names/' \
            -e '/^ /d' >"$root/DEBIAN/control"
    cat >>"$root/DEBIAN/control" <<'TEXT'
 Installs /usr/bin/fleetspeak-server and /usr/bin/fleetspeak-config as Fleetgate, and
 fleetspeak-server.service as an alias of fleetgate.service, so that scripts and GRR
 set-ups that start fleetspeak-server run Fleetgate instead.
TEXT
    dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$out/fleetgate-fleetspeak-compat_${version}_${arch}.deb"
fi
ls -l "$out"/*.deb
