/**
 * Generates SMT files the way SMT delivers them, for tests, the bench and local mode: the real
 * interval CSV layout (apostrophe ESIIDs, MM/DD/YYYY dates, 96 rows a day, 100 on the fall-back
 * day with repeated labels, 96 with a blank phantom hour on the spring-forward day, both
 * channels), optionally zipped, then encrypted by GnuPG (`gpg --encrypt`, armored or binary,
 * compressed or not) to a key made in a temporary GNUPGHOME (RSA or Curve25519).
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { localDayGrid } from '../lambdas/core/smt/parse/local-day.ts';
import { INTERVAL_CSV_HEADER } from '../lambdas/core/smt/parse/interval-csv.ts';
import { SMT_TIME_ZONE } from '../lambdas/core/smt/model.ts';
import { utcOffsetMs } from '../lambdas/core/time.ts';

const run = promisify(execFile);

export type GpgKeyAlgorithm = 'rsa' | 'cv25519';

export interface GpgKeyring {
  home: string;
  fingerprint: string;
  /** Armored secret key (protected by `passphrase`). */
  armoredPrivateKey: string;
  armoredPublicKey: string;
  passphrase: string;
  dispose(): Promise<void>;
}

/** A key pair in a fresh GNUPGHOME: RSA 3072, or legacy Curve25519 (ed25519 primary, cv25519 encryption subkey). */
export async function createGpgKeyring(algorithm: GpgKeyAlgorithm, options: { passphrase?: string; home?: string } = {}): Promise<GpgKeyring> {
  const home = options.home ?? (await mkdtemp(join(tmpdir(), 'mb-gnupg-')));
  const passphrase = options.passphrase ?? 'smt-test-passphrase';
  const gpg = (args: string[]) =>
    run('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase', passphrase, ...args], { maxBuffer: 64 * 1024 * 1024 });
  const uid = `meterbridge SMT ${algorithm} <smt-${algorithm}@example.invalid>`;
  const [primary, sub] = algorithm === 'rsa' ? ['rsa3072', 'rsa3072'] : ['ed25519', 'cv25519'];
  await gpg(['--quick-gen-key', uid, primary, 'sign', 'never']);
  const { stdout } = await gpg(['--with-colons', '--list-secret-keys', uid]);
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(stdout)?.[1];
  if (!fingerprint) throw new Error(`gpg did not report a fingerprint: ${stdout}`);
  await gpg(['--quick-add-key', fingerprint, sub, 'encr', 'never']);
  const { stdout: armoredPrivateKey } = await gpg(['--armor', '--export-secret-keys', fingerprint]);
  const { stdout: armoredPublicKey } = await gpg(['--armor', '--export', fingerprint]);
  return {
    home,
    fingerprint,
    armoredPrivateKey,
    armoredPublicKey,
    passphrase,
    async dispose() {
      await run('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => undefined);
      if (!options.home) await rm(home, { recursive: true, force: true });
    },
  };
}

export interface SmtCsvSpec {
  esiids: string[];
  /** Local dates `YYYY-MM-DD`. */
  days: string[];
  /** REVISION_DATE, `MM/DD/YYYY HH:MM:SS` (SMT's local time). */
  revision: string;
  /** @default ['Consumption'] */
  channels?: Array<'Consumption' | 'Surplus Generation'>;
  /** Quality flag of every row, or a function of (esiid, date, row). @default 'A' */
  flag?: 'A' | 'E' | ((esiid: string, date: string, row: number) => 'A' | 'E');
  /** kWh of a row; undefined leaves it blank (missing). @default a deterministic pattern */
  value?: (esiid: string, date: string, row: number, channel: string) => number | undefined;
  /** Write ESIIDs with SMT's leading apostrophe. @default true */
  apostrophe?: boolean;
}

/** The default kWh pattern: deterministic, distinct per meter and row, three decimals. */
export function defaultKwh(esiid: string, _date: string, row: number, channel: string): number {
  const seed = Number(esiid.slice(-4)) + (channel === 'Consumption' ? 0 : 7);
  return Math.round((((seed * 31 + row * 17) % 997) / 1000 + 0.05) * 1000) / 1000;
}

/** The rows' labels as SMT writes them: local wall-clock times, repeating on the fall-back day. */
function labels(date: string, timeZone: string): Array<[string, string]> {
  const grid = localDayGrid(date, timeZone);
  const result: Array<[string, string]> = [];
  const wall = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit' });
  if (grid.phantomRows.size > 0) {
    // Spring forward: SMT lists all 96 wall-clock slots, the skipped hour included (blank).
    for (let row = 0; row < grid.rows; row++) result.push([hhmm(row * 900), hhmm(((row + 1) * 900) % 86_400)]);
    return result;
  }
  for (let i = 0; i < grid.intervals; i++) {
    const start = wall.format(grid.startMs + i * 900_000);
    const end = wall.format(grid.startMs + (i + 1) * 900_000);
    result.push([start, end === '24:00' ? '00:00' : end]);
  }
  return result;
}

function hhmm(seconds: number): string {
  return `${String(Math.floor(seconds / 3600)).padStart(2, '0')}:${String((seconds % 3600) / 60).padStart(2, '0')}`;
}

function usDate(date: string): string {
  const [y, m, d] = date.split('-');
  return `${m}/${d}/${y}`;
}

/** CSV lines of the spec, header first, generated lazily (a bench file is a gigabyte). */
export function* smtCsvLines(spec: SmtCsvSpec, timeZone = SMT_TIME_ZONE): Generator<string> {
  yield INTERVAL_CSV_HEADER.join(',');
  const channels = spec.channels ?? ['Consumption'];
  const value = spec.value ?? defaultKwh;
  const flagOf = typeof spec.flag === 'function' ? spec.flag : () => (spec.flag as 'A' | 'E' | undefined) ?? 'A';
  for (const esiid of spec.esiids) {
    const id = spec.apostrophe === false ? esiid : `'${esiid}`;
    for (const date of spec.days) {
      const grid = localDayGrid(date, timeZone);
      const rowLabels = labels(date, timeZone);
      for (const channel of channels) {
        for (let row = 0; row < grid.rows; row++) {
          const [start, end] = rowLabels[row]!;
          const kwh = grid.phantomRows.has(row) ? undefined : value(esiid, date, row, channel);
          const flag = kwh === undefined ? '' : flagOf(esiid, date, row);
          // SMT pads times with a leading space in some exports; keep one to exercise it.
          yield `${id},${usDate(date)},${spec.revision},${start}, ${end},${kwh === undefined ? '' : kwh.toFixed(3)},${flag},${channel}`;
        }
      }
    }
  }
}

/** LSE channel numbers (ERCOT RMG App. G): 4 = load (Consumption), 1 = generation (Surplus Generation). */
const LSE_CHANNEL = { Consumption: '4', 'Surplus Generation': '1' } as const;

/** `YYYYMMDDHHMMSS` of a local date at midnight, or of the last second of that day. */
const lseStamp = (date: string, endOfDay: boolean) => `${date.replace(/-/g, '')}${endOfDay ? '235959' : '000000'}`;

/**
 * The spec as an LSE file (LodeStar Enhanced, docs/smt.md): one cut per ESIID, channel and local
 * day, DST flag Y (local prevailing time, so a cut holds the day's 92, 96 or 100 intervals), the
 * revision as the 00000004 time stamp, 48 value/status/time triples per data record with the
 * time field on the first triple of each record (the interval's start, as the parser checks).
 */
export function* smtLseLines(spec: SmtCsvSpec, timeZone = SMT_TIME_ZONE): Generator<string> {
  const channels = spec.channels ?? ['Consumption'];
  const value = spec.value ?? defaultKwh;
  const flagOf = typeof spec.flag === 'function' ? spec.flag : () => (spec.flag as 'A' | 'E' | undefined) ?? 'A';
  const [month, day, year, hour, minute, second] = spec.revision.split(/[/ :]/);
  const revisionStamp = `${year}${month}${day}${hour}${minute}${second}`;
  // The wall-clock time in the zone as YYYYMMDDHHMMSS, from the store's own zone arithmetic.
  const stampOf = (ms: number) => new Date(ms + utcOffsetMs(ms, timeZone)).toISOString().slice(0, 19).replace(/\D/g, '');
  for (const esiid of spec.esiids) {
    for (const channel of channels) {
      for (const date of spec.days) {
        const grid = localDayGrid(date, timeZone);
        yield `00000001,${esiid},${LSE_CHANNEL[channel]},${lseStamp(date, false)},${lseStamp(date, true)},Y,N`;
        yield `00000002,,,1,0,1,0,${grid.intervalSeconds},KWH,,,,`;
        yield `00000004,${revisionStamp},SMT`;
        let record = 10_000_001;
        // Row numbers as the CSV counts them (the spring-forward day's phantom rows skipped), so both layouts carry the same values.
        const rows = Array.from({ length: grid.rows }, (_, row) => row).filter((row) => !grid.phantomRows.has(row));
        for (let first = 0; first < rows.length; first += 48) {
          const triples = rows.slice(first, first + 48).map((row, i) => {
            const kwh = value(esiid, date, row, channel);
            const time = i === 0 ? stampOf(grid.startMs + (first + i) * grid.intervalSeconds * 1000) : '';
            return `${kwh === undefined ? '' : kwh.toFixed(3)},${kwh === undefined ? '' : flagOf(esiid, date, row)},${time}`;
          });
          yield `${record++},${triples.join(',')}`;
        }
      }
    }
  }
}

export function smtCsv(spec: SmtCsvSpec): string {
  return `${[...smtCsvLines(spec)].join('\r\n')}\r\n`;
}

/** Streams the spec's CSV into a file (bounded memory at any size). */
export async function writeSmtCsv(path: string, spec: SmtCsvSpec, format: 'csv' | 'lse' = 'csv'): Promise<number> {
  const out = createWriteStream(path);
  let buffer = '';
  for (const line of format === 'lse' ? smtLseLines(spec) : smtCsvLines(spec)) {
    buffer += `${line}\r\n`;
    if (buffer.length > 1 << 20) {
      if (!out.write(buffer)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      buffer = '';
    }
  }
  out.end(buffer);
  await new Promise<void>((resolve, reject) => {
    out.once('finish', resolve);
    out.once('error', reject);
  });
  return (await stat(path)).size;
}

export interface SmtFileOptions extends SmtCsvSpec {
  /** Folder to write into. */
  dir: string;
  /** Recipient (public key in this keyring); clear CSV when undefined. */
  keyring?: GpgKeyring;
  /** @default true */
  armor?: boolean;
  /** gpg compression. @default true (gpg's default, ZLIB) */
  compress?: boolean;
  /** Put the CSV inside a ZIP before encrypting. @default false */
  zip?: boolean;
  /** Layout the spec is written in. @default 'csv' */
  format?: 'csv' | 'lse';
  /** Clear content written as is instead of the spec (other SMT reports, spreadsheet re-saves, hostile text). */
  content?: string;
  /** A ZIP bundle of these members (name, clear content) instead of the spec; `csvPath` is then the ZIP. */
  members?: Array<{ name: string; content: string }>;
  /** File name. @default IntervalMeterUsage<timestamp>_<n>.CSV.<DUNS>.asc, as SMT names them */
  name?: string;
}

export interface SmtFile {
  path: string;
  name: string;
  size: number;
  /** The clear CSV file (kept beside, for comparisons), and its size. */
  csvPath: string;
  csvSize: number;
}

let sequence = 0;

/** Writes one SMT file: real-layout CSV, optionally zipped, encrypted by gpg to `keyring`. */
export async function writeSmtFile(options: SmtFileOptions): Promise<SmtFile> {
  sequence += 1;
  const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const name =
    options.name ??
    `IntervalMeterUsage${stamp}_${process.pid}_${sequence}.CSV.123456789.${options.keyring ? (options.armor === false ? 'pgp' : 'asc') : 'csv'}`;
  const path = join(options.dir, name);
  const work = await mkdtemp(join(tmpdir(), 'mb-smtfile-'));
  const csvPath = join(work, `${name.replace(/\.(asc|pgp|csv)$/, '')}.${options.members ? 'zip' : options.format === 'lse' ? 'lse' : 'csv'}`);
  let csvSize: number;
  if (options.members) {
    const dir = join(work, 'members');
    await mkdir(dir);
    for (const member of options.members) await writeFile(join(dir, member.name), member.content);
    await run('python3', [
      '-c',
      'import sys,zipfile,os; z=zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_DEFLATED); [z.write(os.path.join(sys.argv[2], n), n) for n in sys.argv[3:]]; z.close()',
      csvPath,
      dir,
      ...options.members.map((member) => member.name),
    ]);
    csvSize = (await stat(csvPath)).size;
  } else if (options.content !== undefined) {
    await writeFile(csvPath, options.content);
    csvSize = Buffer.byteLength(options.content);
  } else {
    csvSize = await writeSmtCsv(csvPath, options, options.format);
  }
  let payload = csvPath;
  if (options.zip && !options.members) {
    payload = join(work, 'payload.zip');
    await run('zip', ['-q', '-j', payload, csvPath]).catch(async () => {
      // No zip binary: python's zipfile is on every Debian image the tests run on.
      await run('python3', [
        '-c',
        'import sys,zipfile,os; z=zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_DEFLATED); z.write(sys.argv[2], os.path.basename(sys.argv[2])); z.close()',
        payload,
        csvPath,
      ]);
    });
  }
  if (options.keyring) {
    const args = ['--homedir', options.keyring.home, '--batch', '--yes', '--trust-model', 'always', '--recipient', options.keyring.fingerprint];
    if (options.armor !== false) args.push('--armor');
    args.push('--compress-algo', options.compress === false ? 'none' : 'zlib', '--output', path, '--encrypt', payload);
    await run('gpg', args, { maxBuffer: 16 * 1024 * 1024 });
  } else {
    await run('cp', [payload, path]);
  }
  if (payload !== csvPath) await rm(payload, { force: true });
  // The file takes the owner of its folder, so a stand-in server running as that user (proftpd as
  // nobody, see smt-servers.ts) may delete it after the fetch step archived it.
  if (process.getuid?.() === 0) {
    const folder = await stat(options.dir);
    await chown(path, folder.uid, folder.gid);
  }
  return { path, name: basename(path), size: (await stat(path)).size, csvPath, csvSize };
}

/** Removes the clear CSV kept by writeSmtFile (its folder). */
export async function disposeSmtFile(file: SmtFile): Promise<void> {
  await rm(dirname(file.csvPath), { recursive: true, force: true });
}

/** For tests: the clear CSV's text. */
export async function readClearCsv(file: SmtFile): Promise<string> {
  return readFile(file.csvPath, 'utf8');
}
