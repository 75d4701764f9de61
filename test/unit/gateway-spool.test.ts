/**
 * The spool on a real filesystem (temp directories): framing, recovery after interrupted writes,
 * the cursor and outbox protocol, seq persistence, segment deletion and the size cap.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Log } from '../../shared/log.ts';
import { frameRecord, scanRecords, Spool, type SpooledReading } from '../../gateway/src/spool.ts';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mb-spool-'));
  dirs.push(dir);
  return dir;
}

function recordingLog(): Log & { lines: Array<{ level: string; message: string }> } {
  const lines: Array<{ level: string; message: string }> = [];
  const push = (level: string) => (message: string) => void lines.push({ level, message });
  return { lines, debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
}

const reading = (i: number, meterId = 'm-1'): SpooledReading => ({
  meterId,
  channel: 'energy.active.import',
  start: 1_790_000_000 - (1_790_000_000 % 900) + i * 900,
  intervalSeconds: 900,
  value: i / 10,
  unit: 'kWh',
  quality: i % 7 === 0 ? 'estimated' : 'actual',
  counter: 1000 + i,
});
const readings = (from: number, count: number, meterId?: string) => Array.from({ length: count }, (_, k) => reading(from + k, meterId));
const strip = ({ index: _index, ...rest }: SpooledReading & { index: number }) => rest;

describe('record framing', () => {
  it('reads back framed records, stops at a cut-short one and resynchronizes past a corrupted one', () => {
    const records = ['a', 'bb', 'ccc'].map((text) => frameRecord(Buffer.from(text)));
    const whole = Buffer.concat(records);
    assert.deepEqual(scanRecords(whole).records.map(String), ['a', 'bb', 'ccc']);
    assert.equal(scanRecords(whole).damaged, false);

    const cut = whole.subarray(0, whole.length - 1);
    assert.deepEqual(scanRecords(cut).records.map(String), ['a', 'bb']);
    assert.equal(scanRecords(cut).damaged, true);
    assert.equal(scanRecords(cut).damagedTail, true);
    assert.equal(scanRecords(cut).validBytes, records[0]!.length + records[1]!.length);

    const flipped = Buffer.from(whole);
    const at = records[0]!.length + 12; // first payload byte of "bb"
    flipped[at] = flipped[at]! ^ 0xff;
    assert.deepEqual(scanRecords(flipped).records.map(String), ['a', 'ccc'], 'one bad record costs that record only');
    assert.equal(scanRecords(flipped).corruptStretches, 1);
    assert.equal(scanRecords(flipped).damagedTail, false);
  });
});

describe('Spool', () => {
  it('keeps appended readings across reopen, in order, with their fields', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory });
    assert.deepEqual(spool.append(readings(0, 5)), { appended: 5, refused: 0 });
    spool.append(readings(5, 3));
    spool.close();
    const reopened = Spool.open({ directory });
    assert.deepEqual(reopened.readForward(0, 100).map(strip), readings(0, 8));
    assert.deepEqual(
      reopened.readForward(6, 100).map((r) => r.index),
      [6, 7],
    );
    assert.equal(reopened.stats().depth, 8);
    assert.deepEqual(reopened.lastCounter('m-1', 'energy.active.import'), { end: reading(7).start + 900, counter: 1007 });
    reopened.close();
  });

  it('drops a torn final record (and only that), warns, and appends after it', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory });
    spool.append(readings(0, 4));
    spool.close();
    const segment = join(
      directory,
      readdirSync(directory).find((name) => name.startsWith('seg-'))!,
    );
    const sizeBefore = statSync(segment).size;
    appendFileSync(segment, frameRecord(Buffer.from('["m-1","x"')).subarray(0, 12));

    const log = recordingLog();
    const reopened = Spool.open({ directory, log });
    assert.equal(reopened.stats().tornRecordsDropped, 1);
    assert.equal(statSync(segment).size, sizeBefore, 'truncated back to the last good record');
    assert.ok(log.lines.some((l) => l.level === 'warn' && /torn record/.test(l.message)));
    reopened.append(readings(4, 2));
    reopened.close();
    assert.deepEqual(Spool.open({ directory }).readForward(0, 100).map(strip), readings(0, 6));
  });

  it('skips only the corrupt record in the middle of a segment, and says so', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory, segmentBytes: 300, maxBytes: 10_000 });
    for (let i = 0; i < 12; i++) spool.append(readings(i, 1));
    spool.close();
    const segments = readdirSync(directory)
      .filter((name) => name.startsWith('seg-'))
      .sort();
    assert.ok(segments.length >= 3, 'several segments');
    const first = join(directory, segments[0]!);
    const bytes = readFileSync(first);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff;
    writeFileSync(first, bytes);

    const log = recordingLog();
    const reopened = Spool.open({ directory, segmentBytes: 300, maxBytes: 10_000, log });
    assert.equal(reopened.stats().corruptRecords, 1);
    assert.ok(log.lines.some((l) => l.level === 'error' && /corrupt record/.test(l.message)));
    const indices = reopened.readForward(0, 100).map((r) => r.index);
    assert.equal(indices.length, 11, `only the damaged reading is skipped (${indices})`);
    assert.equal(indices.at(-1), 11, 'later segments are intact');
  });

  it('loses one reading, not the rest of its segment, to one flipped byte (default 4 MiB segments)', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory });
    spool.append(readings(0, 150));
    spool.append(readings(150, 50, 'm-2'));
    spool.close();
    const segment = join(
      directory,
      readdirSync(directory).find((name) => name.startsWith('seg-'))!,
    );
    const bytes = readFileSync(segment);
    const recordLength = frameRecord(
      Buffer.from(JSON.stringify([40, 'm-1', 'energy.active.import', reading(40).start, 900, 4, 'kWh', 0, 1040])),
    ).length;
    const offset = bytes.indexOf(Buffer.from('[40,"m-1"'));
    bytes[offset + 20] = bytes[offset + 20]! ^ 0x01; // a byte inside reading 40's payload
    bytes[offset - 12 + recordLength + 5] = bytes[offset - 12 + recordLength + 5]! ^ 0x80; // and reading 41's length field
    writeFileSync(segment, bytes);

    const log = recordingLog();
    const reopened = Spool.open({ directory, log });
    const back = reopened.readForward(0, 1000);
    assert.deepEqual(
      back.map((r) => r.index),
      [...Array(200).keys()].filter((i) => i !== 40 && i !== 41),
      'the two damaged readings, nothing else',
    );
    assert.deepEqual(back.map(strip), [...readings(0, 40), ...readings(42, 108), ...readings(150, 50, 'm-2')]);
    assert.equal(reopened.stats().corruptRecords, 1, 'one corrupt stretch (two adjacent records)');
    assert.equal(reopened.stats().corruptReadingsLost, 2);
    assert.equal(reopened.stats().tornRecordsDropped, 0, 'damage in the middle of the newest segment is not taken for a torn write');
    reopened.append(readings(200, 1));
    assert.equal(
      reopened
        .readForward(199, 10)
        .map((r) => r.index)
        .join(),
      '199,200',
    );
    reopened.close();
  });

  it('rebuilds a damaged state.json from the segments and the outbox, with a warning and a counter, and reuses no seq', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory, segmentBytes: 400, maxBytes: 100_000 });
    for (let i = 0; i < 20; i++) spool.append(readings(i, 1));
    const [a, b] = [spool.allocateSeq(), spool.allocateSeq()];
    spool.addMessages(
      [
        { seq: a, cursorAfter: 10, body: 'A', readings: 10 },
        { seq: b, cursorAfter: 15, body: 'B', readings: 5 },
      ],
      15,
    );
    spool.acknowledge(a);
    spool.persistState();
    spool.close();
    const statePath = join(directory, 'state.json');
    const text = readFileSync(statePath, 'utf8');
    // One digit of the cursor changed: still valid JSON with plausible numbers; only the CRC tells.
    const damaged = text.replace(/"cursor":(\d)/, (_, digit: string) => `"cursor":${(Number(digit) + 1) % 10}`);
    assert.notEqual(damaged, text);
    for (const content of [damaged, text.slice(0, 9), '\u0000{']) {
      writeFileSync(statePath, content);
      const log = recordingLog();
      const reopened = Spool.open({ directory, segmentBytes: 400, maxBytes: 100_000, log });
      const stats = reopened.stats();
      assert.equal(stats.stateRebuilt, 1);
      assert.ok(log.lines.some((l) => l.level === 'warn' && /state\.json damaged; rebuilt/.test(l.message)));
      assert.ok(stats.cursor <= 10, 'the cursor goes back to the oldest reading on disk, never forward');
      assert.deepEqual(
        reopened
          .readForward(stats.cursor, 100)
          .map((r) => r.index)
          .filter((i) => i >= 10),
        [...Array(10).keys()].map((i) => i + 10),
        'no unacknowledged reading is lost',
      );
      assert.deepEqual(
        reopened.pendingMessages().map((m) => m.seq),
        [a, b],
        'the outbox is re-sent under its own seqs',
      );
      assert.ok(reopened.allocateSeq() > b, 'new seqs are above every seq used before');
      reopened.close();
      assert.equal(Spool.open({ directory, segmentBytes: 400, maxBytes: 100_000 }).stats().stateRebuilt, 0, 'the rebuilt state.json was written');
    }
  });

  it('opens a spool written in record format 1 (no magic, no index), reads it, and appends in format 2', () => {
    const directory = tempDir();
    const legacyFrame = (payload: Buffer) => {
      const header = Buffer.alloc(8);
      header.writeUInt32LE(payload.length, 0);
      header.writeUInt32LE(crc32(payload), 4);
      return Buffer.concat([header, payload]);
    };
    const legacyRow = (r: SpooledReading) =>
      Buffer.from(JSON.stringify([r.meterId, r.channel, r.start, r.intervalSeconds, r.value, r.unit, r.quality === 'estimated' ? 1 : 0, r.counter]));
    writeFileSync(join(directory, 'seg-0000000000000000.log'), Buffer.concat(readings(0, 5).map((r) => legacyFrame(legacyRow(r)))));
    writeFileSync(join(directory, 'seg-0000000000000005.log'), Buffer.concat(readings(5, 3).map((r) => legacyFrame(legacyRow(r)))));
    writeFileSync(join(directory, 'outbox.log'), legacyFrame(Buffer.from(JSON.stringify({ seq: 77, cursorAfter: 2, body: 'L', readings: 2 }))));
    writeFileSync(join(directory, 'state.json'), JSON.stringify({ cursor: 0, ackedSeq: 76 }));

    const spool = Spool.open({ directory });
    assert.equal(spool.stats().stateRebuilt, 0, 'a format 1 state.json is accepted');
    assert.deepEqual(spool.readForward(0, 100).map(strip), readings(0, 8));
    assert.deepEqual(
      spool.pendingMessages().map((m) => [m.seq, m.body]),
      [[77, 'L']],
    );
    assert.equal(spool.allocateSeq(), 78);
    assert.deepEqual(spool.lastCounter('m-1', 'energy.active.import'), { end: reading(7).start + 900, counter: 1007 });
    spool.append(readings(8, 2));
    spool.close();
    const reopened = Spool.open({ directory });
    assert.deepEqual(reopened.readForward(0, 100).map(strip), readings(0, 10));
    assert.deepEqual(
      reopened.readForward(6, 100).map((r) => r.index),
      [6, 7, 8, 9],
    );
    assert.deepEqual(
      reopened.pendingMessages().map((m) => [m.seq, m.body]),
      [[77, 'L']],
    );
    reopened.close();
  });

  it('moves the cursor only over acknowledged messages from the oldest, and re-offers the rest after a restart', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory });
    spool.append(readings(0, 6));
    const [a, b, c] = [spool.allocateSeq(), spool.allocateSeq(), spool.allocateSeq()];
    spool.addMessages(
      [
        { seq: a, cursorAfter: 0, body: 'A', readings: 2 },
        { seq: b, cursorAfter: 0, body: 'B', readings: 2 },
        { seq: c, cursorAfter: 6, body: 'C', readings: 2 },
      ],
      6,
    );
    assert.equal(spool.buildFrom, 6);
    spool.acknowledge(b); // out of order: nothing moves yet
    assert.equal(spool.stats().ackedSeq, a - 1);
    spool.acknowledge(a);
    assert.equal(spool.stats().ackedSeq, b);
    assert.equal(spool.stats().cursor, 0, 'the window is delivered only with its last message');
    spool.persistState();
    spool.close();

    // SIGKILL-like: reopen without closing cleanly is the same files; c must come back, byte-exact.
    const reopened = Spool.open({ directory });
    assert.deepEqual(
      reopened.pendingMessages().map((m) => [m.seq, m.body]),
      [[c, 'C']],
    );
    assert.equal(reopened.buildFrom, 6, 'readings already in the outbox are not built again');
    assert.equal(reopened.allocateSeq(), c + 1, 'seq keeps increasing across restarts');
    reopened.acknowledge(c);
    reopened.persistState();
    assert.equal(reopened.stats().depth, 0);
    assert.equal(statSync(join(directory, 'outbox.log')).size, 0, 'the outbox is emptied once everything in it is acknowledged');
    reopened.close();
    const again = Spool.open({ directory });
    assert.equal(again.allocateSeq(), c + 1, 'seq survives the emptied outbox (state.json)');
    again.close();
  });

  it('starts a new spool at a time-based seq, so a wiped gateway never reuses a seq the cloud has seen', () => {
    const before = Date.now();
    const spool = Spool.open({ directory: tempDir() });
    const first = spool.allocateSeq();
    assert.ok(first >= before && first <= Date.now() + 1, `first seq ${first} is the creation time in ms`);
    spool.close();
  });

  it('drops a torn outbox record: that message was never published', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory });
    spool.append(readings(0, 2));
    const seq = spool.allocateSeq();
    spool.addMessages([{ seq, cursorAfter: 2, body: 'X', readings: 2 }], 2);
    spool.close();
    appendFileSync(join(directory, 'outbox.log'), Buffer.from([9, 0, 0, 0, 1]));
    const reopened = Spool.open({ directory });
    assert.equal(reopened.stats().tornRecordsDropped, 1);
    assert.deepEqual(
      reopened.pendingMessages().map((m) => m.seq),
      [seq],
    );
    reopened.close();
  });

  it('deletes segments once the persisted cursor has passed them', () => {
    const directory = tempDir();
    const spool = Spool.open({ directory, segmentBytes: 400, maxBytes: 100_000 });
    for (let i = 0; i < 20; i++) spool.append(readings(i, 1));
    const segments = spool.stats().segments;
    assert.ok(segments > 3);
    const seq = spool.allocateSeq();
    spool.addMessages([{ seq, cursorAfter: 15, body: 'M', readings: 15 }], 15);
    spool.acknowledge(seq);
    spool.persistState();
    assert.ok(spool.stats().segments < segments, 'delivered segments are gone');
    assert.deepEqual(
      spool.readForward(15, 100).map((r) => r.index),
      [15, 16, 17, 18, 19],
    );
    spool.close();
  });

  it('at the size cap, drop-oldest deletes the oldest unsent segment with an error log and counts the readings', () => {
    const log = recordingLog();
    const spool = Spool.open({ directory: tempDir(), segmentBytes: 500, maxBytes: 2000, log });
    for (let i = 0; i < 60; i++) spool.append(readings(i, 1));
    const stats = spool.stats();
    assert.ok(stats.bytes <= 2000, `within the cap (${stats.bytes})`);
    assert.ok(stats.droppedReadings > 0);
    assert.equal(stats.depth, 60 - stats.droppedReadings, 'depth counts what is left');
    assert.equal(spool.readForward(0, 1)[0]!.index, stats.cursor, 'reading resumes at the oldest kept reading');
    assert.ok(
      log.lines.some((l) => l.level === 'warn' && /filling up/.test(l.message)),
      'warned before it was full',
    );
    assert.ok(log.lines.some((l) => l.level === 'error' && /oldest unsent readings deleted/.test(l.message)));
    spool.close();
  });

  it('at the size cap, stop-accepting keeps the old readings and refuses new ones', () => {
    const spool = Spool.open({ directory: tempDir(), segmentBytes: 500, maxBytes: 2000, whenFull: 'stop-accepting' });
    let refused = 0;
    for (let i = 0; i < 60; i++) refused += spool.append(readings(i, 1)).refused;
    assert.ok(refused > 0);
    assert.equal(spool.readForward(0, 1)[0]!.index, 0, 'the oldest reading is still there');
    assert.equal(spool.stats().refusedReadings, refused);
    spool.close();
  });
});
