/**
 * Child process of the SMT bench: decrypts one file (openpgp, streaming, to a temp file) and
 * parses it (every day, every reading), then prints {seconds, readings, days, maxRssBytes} as
 * JSON. Run alone so its peak RSS is its own: `node --import tsx bench/smt-worker.ts <file> <key file>`
 * with the passphrase in SMT_BENCH_PASSPHRASE.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decryptToFile, loadPrivateKey } from '../lambdas/core/smt/pgp/decrypt.ts';
import { daysOf } from '../lambdas/core/smt/process.ts';

const [file, keyFile] = process.argv.slice(2);
if (!file || !keyFile) throw new Error('usage: smt-worker.ts <file> <armored key file>');
const key = await loadPrivateKey({ armoredKey: await readFile(keyFile, 'utf8'), passphrase: process.env.SMT_BENCH_PASSPHRASE });
// Let the unlock's buffers go before measuring (the bench runs this with --expose-gc).
(globalThis as { gc?: () => void }).gc?.();
const work = await mkdtemp(join(process.env.SMT_BENCH_TMP ?? tmpdir(), 'mb-smt-bench-'));
// Peak RSS of the streaming phase alone, sampled (the key unlock before it allocates transiently:
// openpgp materialises GnuPG's iterated S2K input, tens of MB).
// What the RSS is made of at that peak (V8 heap, external and ArrayBuffer memory): what to shrink.
// Sampled per phase (decrypt to the temp file, then parse it), so the peak can be placed.
let streamingPeak = 0;
let atPeak: NodeJS.MemoryUsage | undefined;
let phase: 'decrypt' | 'parse' = 'decrypt';
const phasePeak = { decrypt: 0, parse: 0 };
const sampler = setInterval(() => {
  const usage = process.memoryUsage();
  phasePeak[phase] = Math.max(phasePeak[phase], usage.rss);
  if (usage.rss > streamingPeak) {
    streamingPeak = usage.rss;
    atPeak = { ...usage };
  }
}, 10);
try {
  const started = process.hrtime.bigint();
  const clear = join(work, 'clear');
  const report = await decryptToFile(createReadStream(file, { highWaterMark: 1024 * 1024 }), clear, { keys: [key], maxClearBytes: 64 * 2 ** 30 });
  const decrypted = process.hrtime.bigint();
  phase = 'parse';
  let days = 0;
  let readings = 0;
  for await (const batch of daysOf(clear, { originId: file }, 64 * 2 ** 30)) {
    days += batch.length;
    for (const day of batch) readings += day.readings.length;
  }
  const done = process.hrtime.bigint();
  process.stdout.write(
    `${JSON.stringify({
      seconds: Number(done - started) / 1e9,
      decryptSeconds: Number(decrypted - started) / 1e9,
      bytesIn: report.bytesIn,
      clearBytes: report.bytesOut,
      days,
      readings,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      streamingPeakRssBytes: streamingPeak,
      atPeak: { ...atPeak, phase: atPeak && phasePeak.parse > phasePeak.decrypt ? 'parse' : 'decrypt' },
      decryptPeakRssBytes: phasePeak.decrypt,
      parsePeakRssBytes: phasePeak.parse,
    })}\n`,
  );
} finally {
  clearInterval(sampler);
  await rm(work, { recursive: true, force: true });
}
