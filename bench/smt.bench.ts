/**
 * SMT bench: decrypt + parse throughput and peak RSS on generated armored files (100 MB and 1 GB
 * by default; BENCH_SMT_SIZES="100MB,1GB" overrides), each beside `gpg --decrypt` of the same file
 * in the same run, and the store's write units per reading for SMT days (DynamoDB Local).
 *
 * Both decryptors run as child processes under /usr/bin/time, so each peak RSS is its own. Ours
 * is the bench worker bundled by esbuild as the Lambda is (bench/smt-worker.ts: openpgp to a temp
 * file, then the parser over every reading), run by plain node.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { silentLog } from '../shared/log.ts';
import { processArchivedFile, type ProcessCounts } from '../lambdas/core/smt/process.ts';
import { createGpgKeyring, writeSmtCsv, writeSmtFile, type GpgKeyring } from '../local/smt-files.ts';
import { archiveOf, processDeps, startSmtHarness } from '../test/support/smt-harness.ts';
import { DEFAULT_BUNDLING } from '../lib/meterbridge-function.ts';
import type { BenchSection } from './section.ts';

const run = promisify(execFile);
const WORKER = fileURLToPath(new URL('./smt-worker.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Thirty days around the fall-back change, both channels: what a month of SMT data looks like. */
const DAYS = Array.from({ length: 30 }, (_, i) => new Date(Date.UTC(2025, 9, 15 + i)).toISOString().slice(0, 10));
const CHANNELS: Array<'Consumption' | 'Surplus Generation'> = ['Consumption', 'Surplus Generation'];

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(KB|MB|GB)?$/i.exec(text.trim());
  if (!match) throw new Error(`BENCH_SMT_SIZES: "${text}" is not a size like 100MB or 1GB`);
  const unit = (match[2] ?? 'MB').toUpperCase();
  return Math.round(Number(match[1]) * (unit === 'GB' ? 1e9 : unit === 'MB' ? 1e6 : 1e3));
}

function esiids(count: number): string[] {
  return Array.from({ length: count }, (_, i) => String(10443720000000000 + i * 7919));
}

interface Measured {
  seconds: number;
  maxRssBytes: number;
}

/** Wall seconds and peak RSS of a command, from GNU time (`%e %M` on the last stderr line). */
async function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured & { stdout: string }> {
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', 'TIME %e %M', command, ...args], { env, maxBuffer: 64 * 1024 * 1024 });
  const line = stderr
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('TIME '));
  if (!line) throw new Error(`no timing from /usr/bin/time: ${stderr}`);
  const [, seconds, kb] = line.split(' ');
  return { seconds: Number(seconds), maxRssBytes: Number(kb) * 1024, stdout };
}

async function bundleWorker(dir: string): Promise<string> {
  const out = join(dir, 'smt-worker.mjs');
  await run(
    join(ROOT, 'node_modules/.bin/esbuild'),
    [
      WORKER,
      '--bundle',
      '--platform=node',
      '--format=esm',
      '--target=node20',
      `--outfile=${out}`,
      '--external:cpu-features',
      '--external:*.node',
      `--banner:js=${DEFAULT_BUNDLING.banner}`,
    ],
    { cwd: ROOT },
  );
  return out;
}

interface SizeFigures {
  targetBytes: number;
  armoredBytes: number;
  readings: number;
  ours: Measured & { internalSeconds: number; decryptSeconds: number; streamingPeakRssBytes: number };
  gpg: Measured;
}

async function measureSize(target: number, keyring: GpgKeyring, keyFile: string, worker: string, dir: string): Promise<SizeFigures> {
  // Size the file: clear bytes per ESIID from a one-meter sample, armor adds about 35 %.
  const sampleSize = await writeSmtCsv(join(dir, 'sample.csv'), {
    esiids: esiids(1),
    days: DAYS,
    channels: CHANNELS,
    revision: '11/20/2025 06:00:00',
  });
  const meters = Math.max(1, Math.round(target / (sampleSize * 1.35)));
  const file = await writeSmtFile({
    dir,
    keyring,
    esiids: esiids(meters),
    days: DAYS,
    channels: CHANNELS,
    revision: '11/20/2025 06:00:00',
    compress: false,
    name: `bench-${target}.asc`,
  });
  await rm(file.csvPath, { force: true });
  const env = { ...process.env, SMT_BENCH_PASSPHRASE: keyring.passphrase, SMT_BENCH_TMP: dir };
  const ours = await timed(process.execPath, ['--expose-gc', worker, file.path, keyFile], env);
  const report = JSON.parse(ours.stdout.trim().split('\n').pop()!) as {
    seconds: number;
    decryptSeconds: number;
    readings: number;
    streamingPeakRssBytes: number;
  };
  const gpg = await timed('gpg', [
    '--homedir',
    keyring.home,
    '--batch',
    '--quiet',
    '--pinentry-mode',
    'loopback',
    '--passphrase',
    keyring.passphrase,
    '--output',
    '/dev/null',
    '--decrypt',
    file.path,
  ]);
  await rm(file.path, { force: true });
  return {
    targetBytes: target,
    armoredBytes: file.size,
    readings: report.readings,
    ours: {
      seconds: ours.seconds,
      maxRssBytes: ours.maxRssBytes,
      internalSeconds: report.seconds,
      decryptSeconds: report.decryptSeconds,
      streamingPeakRssBytes: report.streamingPeakRssBytes,
    },
    gpg: { seconds: gpg.seconds, maxRssBytes: gpg.maxRssBytes },
  };
}

/** Write units per reading of SMT days through the real process step (s3rver + DynamoDB Local). */
async function storeCosts(): Promise<Array<{ scenario: string; counts: ProcessCounts }>> {
  const h = await startSmtHarness({ servers: false, keyAlgorithm: 'cv25519' });
  try {
    const tables = await h.dynamo.freshTables();
    const results: Array<{ scenario: string; counts: ProcessCounts }> = [];
    const days = ['2025-11-01', '2025-11-02', '2025-11-03'];
    const deliver = async (scenario: string, name: string, flag: 'A' | 'E', revision: string) => {
      const file = await writeSmtFile({
        dir: h.work,
        keyring: h.keyring,
        esiids: esiids(50),
        days,
        channels: CHANNELS,
        revision,
        flag,
        name,
        value: flag === 'E' ? () => 0.5 : undefined,
      });
      await archiveOf(h).put(`smt/intervaldata/${name}`, readFileSync(file.path));
      const outcome = await processArchivedFile(processDeps(h, tables, { log: silentLog }), `smt/intervaldata/${name}`);
      if (outcome.status !== 'processed') throw new Error(`bench file ${name} was not processed: ${JSON.stringify(outcome)}`);
      results.push({ scenario, counts: outcome.counts });
    };
    await deliver('new days (estimates), 50 meters x 3 days x 2 channels', 'first.asc', 'E', '11/04/2025 06:00:00');
    await deliver('the same days re-delivered with a later REVISION_DATE (actuals)', 'revised.asc', 'A', '11/05/2025 06:00:00');
    // Same content as the revised file under another name (a re-sent file): everything is a duplicate.
    await deliver('the revised file sent again under another name (all duplicates)', 'resent.asc', 'A', '11/05/2025 06:00:00');
    return results;
  } finally {
    await h.stop();
  }
}

const fmt = (value: number, digits = 1) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const mb = (bytes: number) => bytes / 1e6;

export const smtBench: BenchSection = {
  title: 'SMT files (decrypt + parse, store)',
  async run() {
    const sizes = (process.env.BENCH_SMT_SIZES ?? '100MB,1GB').split(',').filter(Boolean).map(parseSize);
    const dir = await mkdtemp(join(tmpdir(), 'mb-smt-bench-'));
    const keyring = await createGpgKeyring('cv25519');
    const lines: string[] = [];
    try {
      const keyFile = join(dir, 'key.asc');
      await writeFile(keyFile, keyring.armoredPrivateKey, { mode: 0o600 });
      const worker = await bundleWorker(dir);
      // Warm gpg-agent, so the first measured gpg run does not pay for starting it.
      await run('gpg', [
        '--homedir',
        keyring.home,
        '--batch',
        '--quiet',
        '--pinentry-mode',
        'loopback',
        '--passphrase',
        keyring.passphrase,
        '--list-secret-keys',
      ]);
      const figures: SizeFigures[] = [];
      for (const size of sizes) {
        process.stderr.write(`bench: SMT ${fmt(mb(size), 0)} MB file...\n`);
        figures.push(await measureSize(size, keyring, keyFile, worker, dir));
      }
      lines.push(
        'Generated interval CSV (30 days around the fall-back change, both channels), encrypted by `gpg --encrypt --armor --compress-algo none`',
        'to a Curve25519 key. "ours" = openpgp streaming decryption to a temp file, then the parser over every reading (what the process step',
        'does before storing), bundled by esbuild and run by plain node; MB/s over the armored size. gpg only decrypts (to /dev/null).',
        'Peak RSS from GNU time for each child process; for ours also the peak sampled while streaming (after the key unlock).',
        '',
        '| armored file | readings | ours: s (in-process) | ours: MB/s | ours: peak RSS (streaming) | gpg --decrypt: s | gpg: MB/s | gpg: peak RSS | ratio ours/gpg (MB/s) |',
        '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      );
      for (const f of figures) {
        const ours = mb(f.armoredBytes) / f.ours.internalSeconds;
        const gpg = mb(f.armoredBytes) / f.gpg.seconds;
        lines.push(
          `| ${fmt(mb(f.armoredBytes), 0)} MB | ${f.readings.toLocaleString('en-US')} | ${fmt(f.ours.internalSeconds)} (decrypt ${fmt(f.ours.decryptSeconds)}) | ${fmt(ours)} | ${fmt(mb(f.ours.maxRssBytes), 0)} MB (${fmt(mb(f.ours.streamingPeakRssBytes), 0)} MB) | ${fmt(f.gpg.seconds)} | ${fmt(gpg)} | ${fmt(mb(f.gpg.maxRssBytes), 0)} MB | ${fmt(ours / gpg, 2)} |`,
        );
      }
    } finally {
      await keyring.dispose();
      await rm(dir, { recursive: true, force: true });
    }
    process.stderr.write('bench: SMT store costs...\n');
    const costs = await storeCosts();
    lines.push('', 'Store cost of SMT days through the process step (s3rver archive, DynamoDB Local; write units as DynamoDB reports them):', '');
    lines.push(
      '| delivery | readings | days | write requests | write units / reading | stored | superseded | duplicate |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const { scenario, counts } of costs) {
      lines.push(
        `| ${scenario} | ${counts.readings} | ${counts.days} | ${counts.writeRequests} | ${fmt(counts.writeUnits / counts.readings, 3)} | ${counts.stored} | ${counts.superseded} | ${counts.duplicate} |`,
      );
    }
    return lines;
  },
};
