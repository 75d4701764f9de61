/**
 * Fuzzing the gateway spool's recovery: byte flips and truncations anywhere in its segments,
 * outbox and state.json, then open. Invariants: the spool opens; every reading it yields is the
 * one written at that index (never a corrupted reading), each at most once and in order; every
 * reading not yet acknowledged whose record no flip or cut touched is recovered; the cursor never
 * moves forward; no seq is handed out again; and the spool takes and returns new readings.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Spool, type SpooledReading } from '../../gateway/src/spool.ts';
import { fc, fuzz } from './support.ts';

const root = mkdtempSync(join(tmpdir(), 'mb-spool-fuzz-'));
after(() => rmSync(root, { recursive: true, force: true }));

const reading = (i: number): SpooledReading => ({
  meterId: `m-${i % 3}`,
  channel: 'energy.active.import',
  start: 1_790_000_100 - (1_790_000_100 % 900) + i * 900,
  intervalSeconds: 900,
  value: Math.round(i * 137.5) / 100,
  unit: 'kWh',
  quality: i % 5 === 0 ? 'estimated' : 'actual',
  ...(i % 2 === 0 ? { counter: 5000 + i } : {}),
});

/** A spool as the agent leaves it: several segments, some readings acknowledged, messages in the outbox. */
interface Image {
  files: Map<string, Buffer>;
  /** Per segment file: the byte range of each reading record, by index. */
  records: Map<string, Array<{ index: number; from: number; to: number }>>;
  cursor: number;
  total: number;
  highestSeq: number;
  segmentBytes: number;
  /** Offsets in outbox.log where a record starts or the file ends. */
  outboxBoundaries: number[];
}

function makeImage(total: number, segmentBytes: number, ackedWindows: number): Image {
  const directory = mkdtempSync(join(root, 'image-'));
  const spool = Spool.open({ directory, segmentBytes, maxBytes: 10 * 1024 * 1024 });
  for (let i = 0; i < total; i += 4) spool.append(Array.from({ length: Math.min(4, total - i) }, (_, k) => reading(i + k)));
  // Windows of 5 readings, each one message; the first `ackedWindows` acknowledged.
  let highestSeq = 0;
  for (let w = 0; (w + 1) * 5 <= Math.min(total, 30); w++) {
    const seq = spool.allocateSeq();
    highestSeq = seq;
    spool.addMessages([{ seq, cursorAfter: (w + 1) * 5, body: `message ${w}`, readings: 5 }], (w + 1) * 5);
    if (w < ackedWindows) spool.acknowledge(seq);
  }
  spool.persistState();
  const cursor = spool.stats().cursor;
  spool.close();
  const files = new Map<string, Buffer>();
  const records = new Map<string, Array<{ index: number; from: number; to: number }>>();
  const outboxBoundaries: number[] = [];
  for (const name of readdirSync(directory)) {
    const bytes = readFileSync(join(directory, name));
    files.set(name, bytes);
    if (name === 'outbox.log') {
      for (let offset = 0; offset < bytes.length; offset += 12 + bytes.readUInt32LE(offset + 4)) outboxBoundaries.push(offset);
      outboxBoundaries.push(bytes.length);
    }
    if (!name.startsWith('seg-')) continue;
    const ranges: Array<{ index: number; from: number; to: number }> = [];
    for (let offset = 0; offset < bytes.length;) {
      const to = offset + 12 + bytes.readUInt32LE(offset + 4);
      ranges.push({ index: (JSON.parse(bytes.subarray(offset + 12, to).toString()) as number[])[0]!, from: offset, to });
      offset = to;
    }
    records.set(name, ranges);
  }
  rmSync(directory, { recursive: true, force: true });
  return { files, records, cursor, total, highestSeq, segmentBytes, outboxBoundaries };
}

type Damage = { kind: 'flip'; file: number; at: number; mask: number } | { kind: 'cut'; file: number; at: number };

const damage: fc.Arbitrary<Damage> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), file: fc.nat(), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), file: fc.nat(), at: fc.nat() }) },
);

let images: Image[] = [];
let caseNumber = 0;

describe('fuzz: gateway spool recovery', () => {
  before(() => {
    images = [makeImage(60, 600, 2), makeImage(120, 1500, 0), makeImage(40, 4 * 1024 * 1024, 5)];
  });

  it('opens after byte flips and cuts anywhere, and loses only the damaged records', async () => {
    await fuzz({
      name: 'gateway-spool-recovery',
      // Each case is a real open on a real filesystem (several fsyncs), about 10-50 ms: a tenth of the other targets' cases.
      runs: process.env.FUZZ_RUNS ? Math.max(1, Math.floor(Number(process.env.FUZZ_RUNS) / 10)) : 300,
      arbitrary: fc.record({ image: fc.nat(2), damages: fc.array(damage, { minLength: 1, maxLength: 4 }) }),
      check: ({ image: which, damages }) => {
        const image = images[which % images.length]!;
        const directory = join(root, `case-${caseNumber++}`);
        mkdirSync(directory);
        try {
          const names = [...image.files.keys()].sort();
          for (const [name, bytes] of image.files) writeFileSync(join(directory, name), bytes);
          // Byte ranges each file lost: flipped bytes, and everything from a cut on.
          const touched = new Map<string, Array<[number, number]>>();
          // An outbox cut exactly between records looks like writes that never happened: nothing on disk
          // says which seqs the lost messages had (a documented limit; a cut anywhere else is detected).
          let outboxCutAtBoundary = false;
          for (const d of damages) {
            const name = names[d.file % names.length]!;
            const path = join(directory, name);
            const bytes = readFileSync(path);
            if (bytes.length === 0) continue;
            const at = d.at % bytes.length;
            if (d.kind === 'flip') {
              bytes[at] = bytes[at]! ^ d.mask;
              writeFileSync(path, bytes);
              touched.set(name, [...(touched.get(name) ?? []), [at, at + 1]]);
            } else {
              truncateSync(path, at);
              if (name === 'outbox.log' && image.outboxBoundaries.includes(at)) outboxCutAtBoundary = true;
              touched.set(name, [...(touched.get(name) ?? []), [at, Infinity]]);
            }
          }

          const spool = Spool.open({ directory, segmentBytes: image.segmentBytes, maxBytes: 10 * 1024 * 1024 });
          try {
            const back = spool.readForward(0, Number.MAX_SAFE_INTEGER);
            let previous = -1;
            for (const got of back) {
              assert.ok(got.index > previous, `index ${got.index} after ${previous}: out of order or yielded twice`);
              previous = got.index;
              const { index, ...fields } = got;
              assert.deepEqual(fields, reading(index), `reading ${index} comes back as written`);
            }
            const recovered = new Set(back.map((r) => r.index));
            for (const [name, ranges] of image.records) {
              const lost = touched.get(name) ?? [];
              for (const record of ranges) {
                if (record.index < image.cursor || lost.some(([from, to]) => from < record.to && to > record.from)) continue;
                assert.ok(
                  recovered.has(record.index),
                  `reading ${record.index} (${name}, bytes ${record.from}-${record.to}) was not damaged but is lost`,
                );
              }
            }
            const stats = spool.stats();
            assert.ok(stats.cursor <= image.cursor, `the cursor moved forward: ${stats.cursor} > ${image.cursor}`);
            if (!outboxCutAtBoundary) assert.ok(spool.allocateSeq() > image.highestSeq, 'a seq is handed out again');
            const next = spool.nextIndex;
            spool.append([reading(next)]);
            assert.deepEqual(
              spool.readForward(next, 10).map((r) => r.index),
              [next],
              'the spool takes new readings after recovery',
            );
            return { outcome: stats.corruptRecords + stats.tornRecordsDropped + stats.stateRebuilt > 0 ? 'refused' : 'accepted' };
          } finally {
            spool.close();
          }
        } finally {
          rmSync(directory, { recursive: true, force: true });
        }
      },
    });
  });
});
