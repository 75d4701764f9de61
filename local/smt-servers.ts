/**
 * Stand-ins for the SMT file servers on loopback, both served by Debian's proftpd from one temp
 * config (see docs/design.md §6):
 *
 * - FTPS like SMT's: explicit TLS required (mod_tls, TLS 1.2+), `TLSVerifyClient on` (a client
 *   certificate from our dev CA is required), user/password from an AuthUserFile;
 * - SFTP (mod_sftp): public-key authentication only, a fixed host key whose fingerprint clients pin.
 *
 * Both serve the same folder tree (`root`, holding e.g. `intervaldata/` and `adhocusage/`), so a
 * test or local mode drops encrypted files there and the fetch step finds them.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createDevCa, issueDeviceCert, issueServerCert } from './dev-ca.ts';
import { freePort } from './dynamodb-local.ts';

const run = promisify(execFile);

export interface LocalSmtServersOptions {
  /** Folder served to both protocols; its sub-folders are SMT's folders. Created if missing. */
  root: string;
  /** @default ['intervaldata', 'adhocusage'] */
  folders?: string[];
  /** @default 'smtuser' */
  user?: string;
  /** @default a random password */
  password?: string;
  /** 0 = a free port. @default 0 */
  ftpsPort?: number;
  /** 0 = a free port. @default 0 */
  sftpPort?: number;
  /** Where certificates, keys and the config go; a temp folder (removed on stop) when not given. */
  stateDir?: string;
  /**
   * What the FTPS server offers for modification times: MLSD (machine-readable listings with full
   * timestamps) and MDTM. Off plays a server whose LIST shows "Nov 30 05:18", without a year.
   * @default { mlsd: true, mdtm: true }
   */
  ftpsTimes?: { mlsd?: boolean; mdtm?: boolean };
}

export interface LocalFtpsEndpoint {
  host: string;
  port: number;
  user: string;
  password: string;
  /** PEM of the client certificate the server accepts, and its key. */
  clientCert: string;
  clientKey: string;
  /** PEM of the CA that signed the server certificate (and the client certificate). */
  ca: string;
  servername: string;
}

export interface LocalSftpEndpoint {
  host: string;
  port: number;
  username: string;
  /** OpenSSH private key the server accepts. */
  privateKey: string;
  /** `SHA256:...` fingerprint of the server's host key, for pinning. */
  hostKeySha256: string;
}

export interface LocalSmtServers {
  root: string;
  ftps: LocalFtpsEndpoint;
  sftp: LocalSftpEndpoint;
  /** Files the server would refuse: a client certificate from another CA, and an unknown SSH key. */
  foreign: { clientCert: string; clientKey: string; sshPrivateKey: string };
  stateDir: string;
  stop(): Promise<void>;
}

/** The uid/gid proftpd serves files as: root may not log in, so it switches to nobody. */
const SERVE_AS_ROOT_ID = 65534;

export async function startLocalSmtServers(options: LocalSmtServersOptions): Promise<LocalSmtServers> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'mb-smt-servers-')));
  await mkdir(stateDir, { recursive: true });
  const user = options.user ?? 'smtuser';
  const password = options.password ?? `pw-${Math.random().toString(36).slice(2, 12)}`;
  const folders = options.folders ?? ['intervaldata', 'adhocusage'];
  await mkdir(options.root, { recursive: true });
  for (const folder of folders) await mkdir(join(options.root, folder), { recursive: true });

  const isRoot = process.getuid?.() === 0;
  const uid = isRoot ? SERVE_AS_ROOT_ID : (process.getuid?.() ?? 1000);
  const gid = isRoot ? SERVE_AS_ROOT_ID : (process.getgid?.() ?? 1000);
  if (isRoot) {
    await assertTraversable(options.root);
    await shareTree(options.root, uid, gid);
  }

  // TLS: a dev CA signing the server certificate and the client certificate; a second CA for the refused one.
  const ca = await createDevCa(stateDir, { commonName: 'meterbridge SMT dev CA', name: 'smt-ca' });
  const server = await issueServerCert(ca, stateDir, { name: 'smt-ftps-server', hostnames: ['localhost'], ips: ['127.0.0.1'] });
  const client = await issueDeviceCert(ca, stateDir, 'smt-client');
  const foreignCa = await createDevCa(stateDir, { commonName: 'somebody else CA', name: 'foreign-ca' });
  const foreignDir = join(stateDir, 'foreign');
  const foreignClient = await issueDeviceCert(foreignCa, foreignDir, 'smt-client');

  // SSH: an RSA host key (PEM, which mod_sftp reads), the client's ed25519 key, and a foreign one.
  const hostKey = join(stateDir, 'ssh_host_rsa_key');
  await run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '3072', '-m', 'PEM', '-N', '', '-f', hostKey]);
  const clientKeyPath = join(stateDir, 'smt_client_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'meterbridge-smt', '-f', clientKeyPath]);
  const foreignKeyPath = join(stateDir, 'foreign_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'foreign', '-f', foreignKeyPath]);
  const authorizedDir = join(stateDir, 'authorized');
  await mkdir(authorizedDir, { recursive: true });
  const { stdout: rfc4716 } = await run('ssh-keygen', ['-e', '-f', `${clientKeyPath}.pub`]);
  await writeFile(join(authorizedDir, user), rfc4716);
  const { stdout: fingerprintLine } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`]);
  const hostKeySha256 = /SHA256:[A-Za-z0-9+/]+/.exec(fingerprintLine)?.[0];
  if (!hostKeySha256) throw new Error(`could not read the host key fingerprint from: ${fingerprintLine}`);

  const { stdout: hash } = await run('openssl', ['passwd', '-6', password]);
  const passwd = join(stateDir, 'ftpd.passwd');
  await writeFile(passwd, `${user}:${hash.trim()}:${uid}:${gid}::${options.root}:/bin/false\n`, { mode: 0o600 });
  const group = join(stateDir, 'ftpd.group');
  await writeFile(group, `smt:x:${gid}:${user}\n`, { mode: 0o600 });

  const ftpsPort = options.ftpsPort || (await freePort());
  const sftpPort = options.sftpPort || (await freePort());
  const config = proftpdConfig({
    stateDir,
    ftpsPort,
    sftpPort,
    passwd,
    group,
    isRoot,
    tlsCert: server.certPath,
    tlsKey: server.keyPath,
    caCert: ca.certPath,
    hostKey,
    authorizedDir,
    mlsd: options.ftpsTimes?.mlsd ?? true,
    mdtm: options.ftpsTimes?.mdtm ?? true,
  });
  const configPath = join(stateDir, 'proftpd.conf');
  await writeFile(configPath, config);
  if (isRoot) {
    // proftpd reads keys as root before dropping privileges, but refuses group/world-readable host keys.
    await chmod(hostKey, 0o600);
  }
  const child = spawn('proftpd', ['--nodaemon', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    await waitForPort(ftpsPort, child, () => output);
    await waitForPort(sftpPort, child, () => output);
  } catch (error) {
    await stopChild(child);
    throw error;
  }

  return {
    root: options.root,
    stateDir,
    ftps: {
      host: '127.0.0.1',
      port: ftpsPort,
      user,
      password,
      clientCert: await readFile(client.certPath, 'utf8'),
      clientKey: await readFile(client.keyPath, 'utf8'),
      ca: await readFile(ca.certPath, 'utf8'),
      servername: 'localhost',
    },
    sftp: { host: '127.0.0.1', port: sftpPort, username: user, privateKey: await readFile(clientKeyPath, 'utf8'), hostKeySha256 },
    foreign: {
      clientCert: await readFile(foreignClient.certPath, 'utf8'),
      clientKey: await readFile(foreignClient.keyPath, 'utf8'),
      sshPrivateKey: await readFile(foreignKeyPath, 'utf8'),
    },
    async stop() {
      await stopChild(child);
      if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Lets the unprivileged server user read, write and delete in the served tree (files dropped later too). */
export async function shareTree(path: string, uid = SERVE_AS_ROOT_ID, gid = SERVE_AS_ROOT_ID): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await chown(path, uid, gid);
  const entries = await readdir(path, { withFileTypes: true });
  for (const entry of entries) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) await shareTree(full, uid, gid);
    else await chown(full, uid, gid);
  }
}

/** The server runs as nobody: every folder above the served root must let it through. */
async function assertTraversable(path: string): Promise<void> {
  const { stat } = await import('node:fs/promises');
  const { dirname, resolve } = await import('node:path');
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    const mode = (await stat(dir)).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the SMT stand-in serves ${path} as user nobody, but ${dir} is not searchable by others (mode ${(mode & 0o777).toString(8)}); chmod o+x it or serve a folder elsewhere`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}

interface ConfigParts {
  stateDir: string;
  ftpsPort: number;
  sftpPort: number;
  passwd: string;
  group: string;
  isRoot: boolean;
  tlsCert: string;
  tlsKey: string;
  caCert: string;
  hostKey: string;
  authorizedDir: string;
  mlsd: boolean;
  mdtm: boolean;
}

function proftpdConfig(p: ConfigParts): string {
  const common = [
    `AuthUserFile ${p.passwd}`,
    `AuthGroupFile ${p.group}`,
    'AuthOrder mod_auth_file.c',
    'RequireValidShell off',
    'UseFtpUsers off',
    'AllowOverwrite on',
    // Chroot each session into its home (the served root) when running as root, as a real server would.
    ...(p.isRoot ? ['DefaultRoot ~'] : []),
  ];
  return [
    'ServerName "meterbridge SMT stand-in"',
    'ServerType standalone',
    'DefaultServer on',
    `Port ${p.ftpsPort}`,
    'DefaultAddress 127.0.0.1',
    'SocketBindTight on',
    'UseIPv6 off',
    'UseReverseDNS off',
    'WtmpLog off',
    'MaxInstances 30',
    ...(p.isRoot ? ['User nobody', 'Group nogroup'] : []),
    `PidFile ${join(p.stateDir, 'proftpd.pid')}`,
    `ScoreboardFile ${join(p.stateDir, 'proftpd.scoreboard')}`,
    `DelayTable ${join(p.stateDir, 'proftpd.delay')}`,
    `SystemLog ${join(p.stateDir, 'proftpd.log')}`,
    `TransferLog ${join(p.stateDir, 'xfer.log')}`,
    'ModulePath /usr/lib/proftpd',
    '<IfModule !mod_tls.c>',
    '  LoadModule mod_tls.c',
    '</IfModule>',
    '<IfModule !mod_sftp.c>',
    '  LoadModule mod_sftp.c',
    '</IfModule>',
    ...common,
    'TLSEngine on',
    'TLSRequired on',
    'TLSProtocol TLSv1.2 TLSv1.3',
    `TLSECCertificateFile ${p.tlsCert}`,
    `TLSECCertificateKeyFile ${p.tlsKey}`,
    `TLSCACertificateFile ${p.caCert}`,
    // What SMT requires: no session without a client certificate from the trusted CA.
    'TLSVerifyClient on',
    'TLSVerifyDepth 2',
    // Node's TLS client does not resume the control session's TLS session on data connections
    // the way proftpd's default demands (TLS 1.3 tickets); SMT's server accepts such clients too.
    'TLSOptions NoSessionReuseRequired',
    `TLSLog ${join(p.stateDir, 'tls.log')}`,
    // Without MLST in FEAT, clients fall back to LIST; the Limit refuses MLSD/MLST even if asked.
    ...(p.mlsd ? [] : ['FactsAdvertise off', '<Limit MLSD MLST>', '  DenyAll', '</Limit>']),
    ...(p.mdtm ? [] : ['<Limit MDTM>', '  DenyAll', '</Limit>']),
    '<VirtualHost 127.0.0.1>',
    `  Port ${p.sftpPort}`,
    '  ServerName "meterbridge SMT SFTP stand-in"',
    '  SFTPEngine on',
    `  SFTPLog ${join(p.stateDir, 'sftp.log')}`,
    `  SFTPHostKey ${p.hostKey}`,
    `  SFTPAuthorizedUserKeys file:${p.authorizedDir}/%u`,
    '  SFTPAuthMethods publickey',
    '  TLSEngine off',
    ...common.map((line) => `  ${line}`),
    '</VirtualHost>',
    '',
  ].join('\n');
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`proftpd exited (${child.exitCode}): ${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`proftpd did not listen on ${port} within 15 s: ${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
