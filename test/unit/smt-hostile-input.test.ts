/**
 * Issue 15, items 6, 7 and 9: SMT values a hostile or clumsy sender can write. LSE numbers follow
 * the interval CSV's strict decimal grammar (one definition, values.ts); duplicate LSE cuts are
 * refused; the line limit holds for any chunking; impossible calendar dates and implausible
 * revisions are refused with the line and field.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SmtLayoutError, type SmtDay } from '../../lambdas/core/smt/model.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { MAX_LINE_BYTES } from '../../lambdas/core/smt/parse/lines.ts';
import { parseDecimal } from '../../lambdas/core/smt/parse/values.ts';
import { smtCsv } from '../../local/smt-files.ts';

const NOW = new Date('2026-11-30T12:00:00Z');

function chunksOf(bytes: Buffer, size: number): Buffer[] {
  if (size <= 0) return [bytes];
  return Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
}

const parse = (text: string | Buffer, chunk = 0, options: { fallbackRevision?: number } = {}): Promise<SmtDay[]> => {
  const chunks = chunksOf(Buffer.isBuffer(text) ? text : Buffer.from(text), chunk);
  return parseSmtAll(
    (async function* () {
      yield* chunks;
    })(),
    { originId: 'test', now: NOW, ...options },
  );
};

/** The result as a comparable string: the readings, or the error's type and message. */
async function outcome(text: string | Buffer, chunk: number): Promise<string> {
  try {
    const days = await parse(text, chunk);
    return JSON.stringify(
      days.map((d) => [d.meterId, d.channel, d.date, d.missing, d.readings.map((r) => [r.start.toISOString(), r.value, r.quality, r.revision])]),
    );
  } catch (error) {
    if (!(error instanceof SmtLayoutError)) throw error;
    return `SmtLayoutError: ${error.message}`;
  }
}

const HEADER_LSE = '00000001,10443720004766435,4,20251103000000,20251103235959,Y,N';
const lse = (values: string[], options: { header?: string; stamp?: string; extra?: string[] } = {}) =>
  [
    options.header ?? HEADER_LSE,
    '00000002,0,0,1,0,1,0,900,KWH,,CST,,',
    ...(options.stamp === '' ? [] : [`00000004,${options.stamp ?? '20251104061500'},SMT`]),
    ...Array.from(
      { length: Math.ceil(values.length / 8) },
      (_, i) =>
        `${10000001 + i},${values
          .slice(i * 8, i * 8 + 8)
          .map((v) => `${v},A,`)
          .join(',')}`,
    ),
    ...(options.extra ?? []),
  ].join('\n');
const values96 = () => Array.from({ length: 96 }, (_, i) => (i / 100).toFixed(2));

describe('LSE numbers: the interval CSV grammar, one definition (item 6)', () => {
  it('refuses 0x10, 0b101, +7, 5., 1e308, Infinity and a space-padded sign with the line (Number() stored 16, 5, 7, 5, 1e308)', async () => {
    for (const text of ['0x10', '0b101', '+7', '5.', '1e308', 'Infinity', '- 1']) {
      const values = values96();
      values[10] = text;
      await assert.rejects(
        parse(lse(values)),
        (e: unknown) => e instanceof SmtLayoutError && e.message === `line 5: interval value ${JSON.stringify(text)} is not a number`,
        text,
      );
    }
  });

  it('a quoted blank value is a missing interval, never 0', async () => {
    const values = values96();
    values[3] = '" "';
    values[4] = '""';
    const [day] = await parse(lse(values));
    assert.equal(day!.missing, 2);
    assert.equal(day!.readings.length, 94);
    assert.ok(
      day!.readings.every((r) => r.value !== 0 || r.start.getTime() === Date.UTC(2025, 10, 3, 6)),
      'only the first interval (0.00) is zero',
    );
  });

  it('CSV and LSE accept and refuse exactly the same value texts', async () => {
    const texts = [
      '0',
      '-0',
      '0.213',
      '-1.5',
      '.5',
      '-.5',
      '007',
      '1e3',
      '2.5E-2',
      '9007199254740993',
      '0x10',
      '0b101',
      '+7',
      '5.',
      '1e308',
      '1e16',
      '-1e16',
      'Infinity',
      'NaN',
      '1.2.3',
      '٣',
    ];
    const csv = smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' });
    for (const text of texts) {
      const lseValues = values96();
      lseValues[5] = text;
      const inLse = await parse(lse(lseValues)).then(
        (days) => days[0]!.readings[5]!.value,
        () => undefined,
      );
      const csvText = csv.replace(/(,00:00, 00:15,)[^,]*,/, `$1${text},`);
      const inCsv = await parse(csvText).then(
        (days) => days[0]!.readings[0]!.value,
        () => undefined,
      );
      assert.deepEqual(inLse, inCsv, `${text}: LSE ${inLse}, CSV ${inCsv}`);
      assert.deepEqual(inLse, parseDecimal(text), text);
    }
  });

  it('refuses a second cut for the same ESIID and channel over an overlapping span, with both lines; other channels and days are fine', async () => {
    const one = lse(values96());
    const again = lse(values96());
    await assert.rejects(
      parse(`${one}\n${again}`),
      (e: unknown) =>
        e instanceof SmtLayoutError &&
        /^line 16: duplicate cut: ESIID 10443720004766435 channel 4 from 20251103000000 overlaps the cut of line 1$/.test(e.message),
    );
    const nextDay = lse(values96(), { header: '00000001,10443720004766435,4,20251104000000,20251104235959,Y,N', stamp: '20251105061500' });
    const otherChannel = lse(values96(), { header: '00000001,10443720004766435,1,20251103000000,20251103235959,Y,N' });
    const days = await parse(`${one}\n${nextDay}\n${otherChannel}`);
    assert.deepEqual(
      days.map((d) => [d.channel, d.date, d.readings.length]),
      [
        ['energy.active.import', '2025-11-03', 96],
        ['energy.active.import', '2025-11-04', 96],
        ['energy.active.export', '2025-11-03', 96],
      ],
    );
  });
});

describe('the line limit holds for any chunking (item 7)', () => {
  const chunkings = [0, 1 << 16, 4093, 1000];

  it(`refuses a line of ${MAX_LINE_BYTES + 1} bytes whether it came in one chunk or many, with the same error`, async () => {
    const long = `00000003,${'x'.repeat(MAX_LINE_BYTES + 1 - 9)}`;
    assert.equal(long.length, MAX_LINE_BYTES + 1);
    const file = lse(values96()).replace('00000002', `${long}\n00000002`);
    for (const chunk of chunkings)
      assert.equal(
        await outcome(file, chunk),
        `SmtLayoutError: a line longer than ${MAX_LINE_BYTES} bytes: not a text file of a known layout`,
        `chunk ${chunk}`,
      );
  });

  it(`takes a line of exactly ${MAX_LINE_BYTES} bytes in any chunking`, async () => {
    const long = `00000003,${'x'.repeat(MAX_LINE_BYTES - 9)}`;
    const file = lse(values96()).replace('00000002', `${long}\n00000002`);
    const results = await Promise.all(chunkings.map((chunk) => outcome(file, chunk)));
    assert.ok(!results[0]!.startsWith('SmtLayoutError'), results[0]);
    for (const result of results) assert.equal(result, results[0]);
  });

  it('reports an error on a line before the long one first, in any chunking', async () => {
    const file = `${HEADER_LSE}\n00000009,unknown\n00000003,${'x'.repeat(MAX_LINE_BYTES)}\n`;
    for (const chunk of chunkings) assert.equal(await outcome(file, chunk), 'SmtLayoutError: line 2: unknown record type 00000009', `chunk ${chunk}`);
  });
});

describe('implausible SMT dates and revisions (item 9)', () => {
  const csv = (revision: string, day = '2025-11-03') => smtCsv({ esiids: ['10443720004766435'], days: [day], revision });

  it('REVISION_DATE in year 9999 is refused with its line and field (it made every later real revision stale)', async () => {
    await assert.rejects(
      parse(csv('12/31/9999 23:59:59')),
      (e: unknown) =>
        e instanceof SmtLayoutError &&
        /^line 2: REVISION_DATE "12\/31\/9999 23:59:59" lies in the future \(now 2026-11-30T12:00:00.000Z\)/.test(e.message),
    );
    // An hour of clock skew is allowed (local Chicago time: now is 06:00 CST).
    await parse(csv('11/30/2026 06:59:00'));
    await assert.rejects(parse(csv('11/30/2026 07:01:00')), /REVISION_DATE "11\/30\/2026 07:01:00" lies in the future/);
  });

  it('REVISION_DATE before its usage day is refused', async () => {
    await assert.rejects(
      parse(csv('11/02/2025 23:59:59')),
      (e: unknown) =>
        e instanceof SmtLayoutError && e.message.startsWith('line 2: REVISION_DATE "11/02/2025 23:59:59" lies before the usage it revises'),
    );
    const [day] = await parse(csv('11/03/2025 00:00:00'));
    assert.equal(day!.readings.length, 96);
  });

  it('02/31 is not a date (it was read as March 3), in REVISION_DATE and USAGE_DATE; nor is a year before 2000', async () => {
    await assert.rejects(
      parse(csv('02/31/2026 06:00:00')),
      (e: unknown) =>
        e instanceof SmtLayoutError && e.message === 'line 2: REVISION_DATE "02/31/2026 06:00:00" is not a valid date and time from 2000 on',
    );
    await assert.rejects(
      parse(csv('11/04/2025 06:00:00').replaceAll('11/03/2025,', '02/31/2025,')),
      /line 2: USAGE_DATE "02\/31\/2025" is not a calendar date from 2000 on/,
    );
    await assert.rejects(
      parse(csv('11/04/2025 06:00:00').replaceAll('11/03/2025,', '11/03/0099,')),
      /line 2: USAGE_DATE "11\/03\/0099" is not a calendar date from 2000 on/,
    );
  });

  it('LSE: year 0099 (read as 1999), Feb 31 and a time stamp in 9999 are refused with the record line', async () => {
    await assert.rejects(
      parse(lse(values96(), { header: '00000001,10443720004766435,4,00991103000000,00991103235959,Y,N' })),
      (e: unknown) => e instanceof SmtLayoutError && e.message === 'line 1: start 00991103000000 is not a valid date and time from 2000 on',
    );
    await assert.rejects(
      parse(lse(values96(), { header: '00000001,10443720004766435,4,20250231000000,20250231235959,Y,N' })),
      /line 1: start 20250231000000 is not a valid date and time/,
    );
    await assert.rejects(parse(lse(values96(), { stamp: '20250231061500' })), /line 3: time stamp 20250231061500 is not a valid date and time/);
    await assert.rejects(
      parse(lse(values96(), { stamp: '99991231000000' })),
      (e: unknown) => e instanceof SmtLayoutError && /^line 3: cut of 10443720004766435: 00000004 time stamp lies in the future/.test(e.message),
    );
    await assert.rejects(
      parse(lse(values96(), { stamp: '20251102120000' })),
      /line 3: cut of 10443720004766435: 00000004 time stamp lies before the usage it revises/,
    );
  });

  it('LSE: a fallback revision (the file time) in the future is refused too', async () => {
    await assert.rejects(
      parse(lse(values96(), { stamp: '' }), 0, { fallbackRevision: Date.UTC(2030, 0, 1) / 1000 }),
      /line 1: cut of 10443720004766435: revision 2030-01-01T00:00:00.000Z \(the file's modification time\) lies in the future/,
    );
    const [day] = await parse(lse(values96(), { stamp: '' }), 0, { fallbackRevision: Date.UTC(2025, 10, 4) / 1000 });
    assert.equal(day!.readings[0]!.revision, Date.UTC(2025, 10, 4) / 1000);
  });
});
