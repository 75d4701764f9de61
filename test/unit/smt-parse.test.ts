import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fastDecimal } from '../../lambdas/core/smt/parse/interval-csv.ts';
import { SmtLayoutError, type SmtDay } from '../../lambdas/core/smt/model.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse/parse.ts';
import { archiveKeysOf } from '../../lambdas/core/smt/s3-event.ts';
import { sniffContent } from '../../lambdas/core/smt/pgp/decrypt.ts';
import { smtCsv } from '../../local/smt-files.ts';

const HEADER = 'ESIID,USAGE_DATE,REVISION_DATE,USAGE_START_TIME,USAGE_END_TIME,USAGE_KWH,ESTIMATED_ACTUAL,CONSUMPTION_SURPLUSGENERATION';
const parse = (text: string, chunk = 0): Promise<SmtDay[]> => {
  // Feed in small chunks too: lines and multi-byte boundaries must not matter.
  const chunks =
    chunk > 0
      ? Array.from({ length: Math.ceil(text.length / chunk) }, (_, i) => Buffer.from(text.slice(i * chunk, (i + 1) * chunk)))
      : [Buffer.from(text)];
  return parseSmtAll(
    (async function* () {
      yield* chunks;
    })(),
    { originId: 'test.csv' },
  );
};

function contiguous(day: SmtDay): boolean {
  return day.readings.every((r, i) => i === 0 || day.readings[i - 1]!.end.getTime() === r.start.getTime());
}

describe('SMT interval CSV', () => {
  it('places the fall-back day by position: 100 distinct contiguous 15-minute UTC intervals', async () => {
    const [day] = await parse(smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-02'], revision: '11/03/2025 06:00:00' }), 333);
    assert.equal(day?.readings.length, 100);
    assert.equal(new Set(day!.readings.map((r) => r.start.getTime())).size, 100);
    assert.ok(contiguous(day!));
    assert.equal(day!.readings[0]!.start.toISOString(), '2025-11-02T05:00:00.000Z', 'local midnight, CDT');
    assert.equal(day!.readings[99]!.end.toISOString(), '2025-11-03T06:00:00.000Z', 'next local midnight, CST');
  });

  it('places the spring-forward day: 96 rows, the blank 02:00 hour skipped, 92 contiguous intervals', async () => {
    const [day] = await parse(smtCsv({ esiids: ['10443720004766435'], days: ['2025-03-09'], revision: '03/10/2025 06:00:00' }));
    assert.equal(day?.readings.length, 92);
    assert.equal(day!.missing, 0, 'the phantom hour is not a missing interval');
    assert.ok(contiguous(day!));
    assert.equal(day!.readings[8]!.start.toISOString(), '2025-03-09T08:00:00.000Z', '03:00 CDT follows 01:45 CST');
  });

  it('refuses a value in the non-existent hour of the spring-forward day', async () => {
    const csv = smtCsv({ esiids: ['10443720004766435'], days: ['2025-03-09'], revision: '03/10/2025 06:00:00' });
    assert.match(csv, /,02:00, 02:15,,,Consumption/);
    await assert.rejects(parse(csv.replace(',02:00, 02:15,,,Consumption', ',02:00, 02:15,1.000,A,Consumption')), /non-existent hour/);
  });

  it('strips the apostrophe, reads both channels, quality, revision in Chicago time, and leaves blanks missing (not zero)', async () => {
    const rows = smtCsv({
      esiids: ['1008901023808105290100'],
      days: ['2025-11-03'],
      revision: '11/04/2025 07:15:00',
      channels: ['Consumption', 'Surplus Generation'],
      flag: (_e, _d, row) => (row === 5 ? 'E' : 'A'),
      value: (_e, _d, row, channel) => (row === 7 ? undefined : channel === 'Consumption' ? row / 10 : 0.001),
    });
    const days = await parse(rows);
    assert.deepEqual(
      days.map((d) => [d.meterId, d.channel, d.readings.length, d.missing]),
      [
        ['1008901023808105290100', 'energy.active.import', 95, 1],
        ['1008901023808105290100', 'energy.active.export', 95, 1],
      ],
    );
    const r = days[0]!.readings;
    assert.equal(r[5]!.quality, 'estimated');
    assert.equal(r[6]!.value, 0.6);
    assert.equal(r[7]!.start.toISOString(), '2025-11-03T08:00:00.000Z', 'row 8 is 02:00 local; row 7 (01:45) was blank');
    assert.equal(r[0]!.revision, Date.UTC(2025, 10, 4, 13, 15) / 1000);
    assert.equal(r[0]!.unit, 'kWh');
    assert.equal(r[0]!.source, 'smt');
  });

  it('refuses an unknown header, naming what it expected', async () => {
    await assert.rejects(
      parse(`${HEADER.replace('USAGE_KWH', 'KWH')}\n`),
      (error: unknown) => error instanceof SmtLayoutError && /unknown layout/.test(error.message),
    );
  });

  it('refuses a file with an endless line as a layout error (a permanent failure, not a retry)', async () => {
    const binaryish = `${HEADER}\n${'x'.repeat(1_200_000)}`;
    await assert.rejects(parse(binaryish), (error: unknown) => error instanceof SmtLayoutError && /a line longer than/.test(error.message));
  });

  it('refuses a day with rows missing, rows out of order, or a bad value', async () => {
    const csv = smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' });
    const lines = csv.trim().split('\r\n');
    await assert.rejects(parse(lines.slice(0, -1).join('\n')), /has 95 rows; a whole day has 96/);
    const swapped = [...lines];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    await assert.rejects(parse(swapped.join('\n')), /rows must be in time order/);
    await assert.rejects(parse(lines.map((l, i) => (i === 9 ? l.replace(/,0\.\d+,A,/, ',1,2,A,') : l)).join('\n')), /expected 8 fields/);
    await assert.rejects(
      parse(lines.map((l, i) => (i === 9 ? l.replace(/,A,Consumption/, ',X,Consumption') : l)).join('\n')),
      /ESTIMATED_ACTUAL "X"/,
    );
    await assert.rejects(parse(lines.map((l, i) => (i === 9 ? l.replace("'10443720004766435", "'1044372") : l)).join('\n')), /not 17 or 22 digits/);
  });
});

describe('SMT interval CSV read as bytes', () => {
  /** Deterministic pseudo-random numbers (a failure must be reproducible). */
  const random = (seed: number) => () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  /** The bytes fed as chunks of the given sizes (cycled), as Buffers or as strings. */
  const parseBytes = (bytes: Buffer, sizes: number[], asStrings = false): Promise<SmtDay[]> => {
    const chunks: Array<Buffer | string> = [];
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const size = Math.max(1, sizes[i % sizes.length]!);
      const piece = bytes.subarray(at, at + size);
      chunks.push(asStrings ? piece.toString('latin1') : piece);
      at += size;
    }
    return parseSmtAll(
      (async function* () {
        yield* chunks;
      })(),
      { originId: 'test.csv' },
    );
  };
  /** Days as text, -0 kept apart from 0 (far faster to compare than deepEqual on thousands of readings). */
  const serialized = async (days: Promise<SmtDay[]>): Promise<string> =>
    JSON.stringify(await days, (_key, value: unknown) => (Object.is(value, -0) ? '-0' : value), 1);
  const outcome = async (days: Promise<SmtDay[]>): Promise<SmtDay[] | string> =>
    days.catch((error: unknown) => (error instanceof SmtLayoutError ? `SmtLayoutError: ${error.message}` : `${String(error)}`));
  const spec = {
    esiids: ['10443720004766435', '1008901023808105290100'],
    days: ['2025-03-09', '2025-11-02', '2025-11-03'],
    revision: '11/04/2025 06:00:00',
    channels: ['Consumption', 'Surplus Generation'] as Array<'Consumption' | 'Surplus Generation'>,
    value: (_e: string, _d: string, row: number, channel: string) => (row % 13 === 4 ? undefined : channel === 'Consumption' ? row / 7 : -row / 1000),
  };
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);

  it('gives the same days whatever the chunk sizes: 1 byte up, lines and CRLF split, a BOM, no newline at the end', async () => {
    const crlf = Buffer.concat([bom, Buffer.from(smtCsv(spec))]);
    const lf = Buffer.from(smtCsv(spec).replace(/\r\n/g, '\n').replace(/\n$/, ''));
    // Whole days of one meter are enough for byte-sized chunks (slow under the test runner).
    const oneMeter = (bytes: Buffer) => bytes.subarray(0, bytes.indexOf("'1008901023808105290100"));
    const cases: Array<[Buffer, number, number[][]]> = [
      [crlf, 2, []],
      [lf, 2, []],
      [oneMeter(crlf), 1, [[1], [2]]],
      [oneMeter(lf), 1, [[3]]],
    ];
    for (const [bytes, meters, tiny] of cases) {
      const days = await parseBytes(bytes, [bytes.length]);
      assert.equal(days.length, meters * 6);
      assert.equal(
        days.reduce((sum, day) => sum + day.readings.length, 0),
        meters * 2 * (92 + 100 + 96) - days.reduce((sum, day) => sum + day.missing, 0),
      );
      const whole = await serialized(Promise.resolve(days));
      const next = random(bytes.length);
      for (const sizes of [...tiny, [5, 1, 7], [89], [4096], Array.from({ length: 50 }, () => 1 + Math.floor(next() * 300))]) {
        assert.equal(await serialized(parseBytes(bytes, sizes)), whole, `chunks of ${sizes.slice(0, 5).join(', ')}`);
      }
      const text = bytes[0] === 0xef ? bytes.subarray(bom.length) : bytes;
      assert.equal(await serialized(parseBytes(text, [7], true)), whole, 'string chunks');
    }
  });

  it('reads quoted fields, blank lines, H:MM labels and spaces the way it reads plain rows', async () => {
    const plain = smtCsv({ ...spec, days: ['2025-11-03'] });
    const lines = plain.split('\r\n');
    const odd = lines.map((line, i) => {
      if (i === 0 || line === '') return line;
      const fields = line.split(',');
      if (i % 5 === 1) return fields.map((field) => `"${field}"`).join(',');
      if (i % 5 === 2) return `${line}\r\n   `;
      if (i % 5 === 3)
        return fields
          .map((field, f) => (f === 3 || f === 4 ? ` ${field.trim().replace(/^0(\d):/, '$1:')} ` : f === 5 || f === 6 ? ` ${field} ` : field))
          .join(',');
      return line;
    });
    const expected = await parse(plain);
    assert.deepEqual(await parse(odd.join('\r\n')), expected);
    assert.deepEqual(await parse(odd.join('\n'), 3), expected);
  });

  it('fails the same way whatever the chunk sizes, a multi-byte character split between chunks included', async () => {
    const lines = smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' }).split('\r\n');
    const broken = [
      lines.map((l, i) => (i === 20 ? l.replace("'10443720004766435", "'1044372000476643é") : l)).join('\r\n'),
      lines.map((l, i) => (i === 20 ? l.replace(',Consumption', ',Cönsumption') : l)).join('\r\n'),
      lines.map((l, i) => (i === 30 ? l.replace(/,0\.\d+,/, ',1.5€,') : l)).join('\r\n'),
      lines.map((l, i) => (i === 30 ? l.replace(/,A,/, ',É,') : l)).join('\r\n'),
      lines.map((l, i) => (i === 30 ? l.replace(/, 0?7:30,/, ', 07:3\u00a0,') : l)).join('\r\n'),
      lines.map((l, i) => (i === 96 ? `"${l}",more` : l)).join('\r\n'),
      lines.slice(0, 50).join('\r\n'),
      `${lines.slice(0, 97).join('\n')}\n${lines[5]}`,
    ];
    for (const text of broken) {
      const bytes = Buffer.concat([bom, Buffer.from(text)]);
      const whole = await outcome(parseBytes(bytes, [bytes.length]));
      assert.equal(typeof whole, 'string', `must fail: ${text.slice(-200)}`);
      for (const sizes of [[1], [2], [3], [7, 1, 2]]) assert.equal(await outcome(parseBytes(bytes, sizes)), whole);
    }
  });

  it('reads USAGE_KWH by hand exactly as Number() does, and leaves the rest to Number()', async () => {
    const next = random(42);
    const digits = (n: number) => Array.from({ length: n }, () => String(Math.floor(next() * 10))).join('');
    const samples = [
      '0',
      '0.000',
      '-0',
      '-0.000',
      '12345.678901',
      '-0.5',
      '.5',
      '-.5',
      '007',
      '0.1',
      '0.2',
      '0.3',
      '999999999999999',
      '0.999999999999999',
      '123456789012345.6',
      '1234567890123456',
      '0.1234567890123456',
      '1e3',
      '1E-3',
      '2.5e+2',
      '9007199254740993',
    ];
    for (let i = 0; i < 20_000; i++) {
      const intDigits = Math.floor(next() * 10);
      const fractionDigits = Math.floor(next() * 12);
      const text = `${next() < 0.2 ? '-' : ''}${digits(intDigits)}${fractionDigits > 0 || intDigits === 0 ? `.${digits(Math.max(1, fractionDigits))}` : ''}`;
      samples.push(text);
    }
    let handled = 0;
    for (const text of samples) {
      const value = fastDecimal(Buffer.from(text), 0, text.length);
      const plain = /^-?\d*\.?\d+$/.test(text) && text.replace(/\D/g, '').length <= 15;
      assert.equal(Number.isNaN(value), !plain, `${text}: taken by hand if and only if a plain decimal of at most 15 digits`);
      if (plain) handled += 1;
      if (plain) assert.ok(Object.is(value, Number(text)), `${text}: ${value} !== ${Number(text)}`);
    }
    assert.ok(handled > 10_000, `the hand path took ${handled} values`);
    for (const text of ['1e3', '1234567890123456', '0.1234567890123456', '', '-', '.', '5.', '1.2.3', '+1', ' 1', '0x10', 'Infinity']) {
      assert.ok(Number.isNaN(fastDecimal(Buffer.from(text), 0, text.length)), `${JSON.stringify(text)} is left to Number()`);
    }

    // Through the parser (first row of a day by the field-by-field path, the others by the fast one).
    const values = samples.filter((text) => !text.startsWith('.') && !text.startsWith('-.')).slice(0, 96 * 40);
    const esiids = Array.from({ length: Math.floor(values.length / 96) }, (_, i) => `1044372000000${String(i).padStart(4, '0')}`);
    const csv = smtCsv({ esiids, days: ['2025-11-03'], revision: '11/04/2025 06:00:00', value: (e, _d, row) => esiids.indexOf(e) * 96 + row });
    const withValues = csv
      .split('\r\n')
      .map((line, i) => (i === 0 || line === '' ? line : line.replace(/,\d+\.000,/, `,${values[i - 1]},`)))
      .join('\r\n');
    const days = await parse(withValues, 4093);
    const read = days.flatMap((day) => day.readings.map((r) => r.value));
    assert.equal(read.length, values.length);
    read.forEach((value, i) => assert.ok(Object.is(value, Number(values[i])), `${values[i]}: ${value}`));
    await assert.rejects(parse(withValues.replace(/,0\.\d+,/, ',5.,')), /USAGE_KWH "5\." is not a number/);
    await assert.rejects(parse(withValues.replace(/,0\.\d+,/, ',Infinity,')), /USAGE_KWH "Infinity" is not a number/);
  });
});

describe('SMT LSE', () => {
  const lse = (values: string[], header = '00000001,10443720004766435,4,20251102000000,20251102235959,Y,N') =>
    [
      header,
      '00000002,0,0,1,0,1,0,900,KWH,,CST,,',
      '00000003,test cut',
      '00000004,20251103061500,SMT',
      ...chunk(values, 8).map((part, i) => `${10000001 + i},${part.join(',')}`),
    ].join('\n');
  const triples = (n: number, status = 'A') => Array.from({ length: n }, (_, i) => `${(i / 100).toFixed(2)},${i === 3 ? 'E' : status},`);

  it('checks the interval count against start, stop and seconds per interval, on the fall-back day too', async () => {
    const days = await parse(lse(triples(100)));
    assert.equal(days.length, 1);
    assert.equal(days[0]!.readings.length, 100);
    assert.ok(contiguous(days[0]!));
    assert.equal(days[0]!.readings[3]!.quality, 'estimated');
    assert.equal(days[0]!.readings[0]!.revision, Date.UTC(2025, 10, 3, 12, 15) / 1000);
    assert.equal(days[0]!.channel, 'energy.active.import');
    await assert.rejects(parse(lse(triples(96))), /has 96 intervals; start, stop and seconds per interval make 100/);
  });

  it('keeps unknown status codes beside the reading instead of guessing', async () => {
    const [day] = await parse(lse(triples(100, 'Q')));
    assert.equal(day!.unknownStatuses?.[day!.readings[0]!.start.toISOString()], 'Q');
    assert.equal(day!.readings[0]!.quality, 'estimated');
  });

  it('keeps channels other than 1 and 4 on their own channel (issue 18); refuses a non-numeric channel and unknown units', async () => {
    const [other] = await parse(lse(triples(100), '00000001,10443720004766435,7,20251102000000,20251102235959,Y,N'));
    assert.equal(other!.channel, 'lse.channel.7');
    await assert.rejects(parse(lse(triples(100), '00000001,10443720004766435,X,20251102000000,20251102235959,Y,N')), /channel "X"/);
    await assert.rejects(parse(lse(triples(100)).replace(',KWH,', ',GALLONS,')), /unit of measure "GALLONS"/);
  });
});

describe('S3 notifications and content sniffing', () => {
  it('decodes URL-encoded keys and ignores the test event', () => {
    const body = JSON.stringify({
      Records: [{ eventName: 'ObjectCreated:Put', s3: { object: { key: 'smt/intervaldata/Interval+Usage%2B1.asc' } } }],
    });
    assert.deepEqual(archiveKeysOf(body), ['smt/intervaldata/Interval Usage+1.asc']);
    assert.deepEqual(archiveKeysOf(JSON.stringify({ Event: 's3:TestEvent' })), []);
    assert.throws(() => archiveKeysOf('nope'), /not an S3 event notification/);
  });

  it('tells armored, binary and clear content apart', () => {
    assert.equal(sniffContent(Buffer.from('-----BEGIN PGP MESSAGE-----\n\nhQ')), 'pgp-armored');
    assert.equal(sniffContent(Buffer.from([0x85, 0x01, 0x8c, 0x03])), 'pgp-binary');
    assert.equal(sniffContent(Buffer.from(HEADER)), 'clear');
  });
});

function chunk<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}
