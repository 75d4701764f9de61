#!/bin/sh
# Installs the meterbridge gateway agent from this unpacked tarball (gateway/README.md "Installing").
# Needs only Node.js >= 20 on the device; no npm, no build step.
#
#   sudo ./install.sh                 install, create the service user, install the systemd unit
#   ./install.sh --root DIR --no-systemd   install the files under DIR only (images, tests)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=/
systemd=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --no-systemd) systemd=no; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "install.sh: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

name=meterbridge-gateway
install -d "$root/usr/lib/$name" "$root/usr/bin" "$root/etc/systemd/system" "$root/usr/share/doc/$name"
install -m 0755 "$here/lib/$name.mjs" "$root/usr/lib/$name/$name.mjs"
ln -sf "../lib/$name/$name.mjs" "$root/usr/bin/$name"
install -m 0644 "$here/systemd/$name.service" "$root/etc/systemd/system/$name.service"
install -m 0644 "$here/gateway.example.yaml" "$here/README.md" "$root/usr/share/doc/$name/"
install -d -m 0750 "$root/etc/$name"

if [ "$systemd" = yes ] && [ "$root" = / ]; then
  if ! id -u meterbridge-gw >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/$name --shell /usr/sbin/nologin meterbridge-gw
  fi
  # RS-485 adapters (/dev/ttyUSB*, /dev/ttyS*) belong to the dialout group.
  if getent group dialout >/dev/null 2>&1; then usermod -a -G dialout meterbridge-gw; fi
  chgrp meterbridge-gw "/etc/$name"
  systemctl daemon-reload
fi

cat <<DONE
meterbridge-gateway $(cat "$here/VERSION") installed under $root.
Next (gateway/README.md):
  1. meterbridge-gateway keygen --thing <thingName> --out /etc/$name --owner meterbridge-gw
     and send /etc/$name/device.csr.pem to the operator (meterbridge device provision --csr).
  2. Put the returned device.cert.pem, AmazonRootCA1.pem and gateway.yaml
     (from /usr/share/doc/$name/gateway.example.yaml) into /etc/$name.
  3. Serial meters: meterbridge-gateway serial-access --config /etc/$name/gateway.yaml
     writes the unit's DeviceAllow= drop-in; then systemctl daemon-reload.
  4. systemctl enable --now $name && journalctl -u $name -f
DONE
