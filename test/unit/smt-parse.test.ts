import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SmtLayoutError, type SmtDay } from '../../lambdas/core/smt/model.ts';
import { parseSmtAll } from '../../lambdas/core/smt/parse.ts';
import { archiveKeysOf } from '../../lambdas/core/smt/s3-event.ts';
import { sniffContent } from '../../lambdas/core/smt/decrypt.ts';
import { smtCsv } from '../../lambdas/local/smt-files.ts';

const HEADER = 'ESIID,USAGE_DATE,REVISION_DATE,USAGE_START_TIME,USAGE_END_TIME,USAGE_KWH,ESTIMATED_ACTUAL,CONSUMPTION_SURPLUSGENERATION';
const parse = (text: string, chunk = 0): Promise<SmtDay[]> => {
  // Feed in small chunks too: lines and multi-byte boundaries must not matter.
  const chunks = chunk > 0 ? Array.from({ length: Math.ceil(text.length / chunk) }, (_, i) => Buffer.from(text.slice(i * chunk, (i + 1) * chunk))) : [Buffer.from(text)];
  return parseSmtAll((async function* () { yield* chunks; })(), { originId: 'test.csv' });
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
      esiids: ['1008901023808105290100'], days: ['2025-11-03'], revision: '11/04/2025 07:15:00',
      channels: ['Consumption', 'Surplus Generation'], flag: (_e, _d, row) => (row === 5 ? 'E' : 'A'),
      value: (_e, _d, row, channel) => (row === 7 ? undefined : channel === 'Consumption' ? row / 10 : 0.001),
    });
    const days = await parse(rows);
    assert.deepEqual(days.map((d) => [d.meterId, d.channel, d.readings.length, d.missing]), [
      ['1008901023808105290100', 'energy.active.import', 95, 1],
      ['1008901023808105290100', 'energy.active.export', 95, 1],
    ]);
    const r = days[0]!.readings;
    assert.equal(r[5]!.quality, 'estimated');
    assert.equal(r[6]!.value, 0.6);
    assert.equal(r[7]!.start.toISOString(), '2025-11-03T08:00:00.000Z', 'row 8 is 02:00 local; row 7 (01:45) was blank');
    assert.equal(r[0]!.revision, Date.UTC(2025, 10, 4, 13, 15) / 1000);
    assert.equal(r[0]!.unit, 'kWh');
    assert.equal(r[0]!.source, 'smt');
  });

  it('refuses an unknown header, naming what it expected', async () => {
    await assert.rejects(parse(`${HEADER.replace('USAGE_KWH', 'KWH')}\n`), (error: unknown) => error instanceof SmtLayoutError && /unknown layout/.test(error.message));
  });

  it('refuses a day with rows missing, rows out of order, or a bad value', async () => {
    const csv = smtCsv({ esiids: ['10443720004766435'], days: ['2025-11-03'], revision: '11/04/2025 06:00:00' });
    const lines = csv.trim().split('\r\n');
    await assert.rejects(parse(lines.slice(0, -1).join('\n')), /has 95 rows; a whole day has 96/);
    const swapped = [...lines];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    await assert.rejects(parse(swapped.join('\n')), /rows must be in time order/);
    await assert.rejects(parse(lines.map((l, i) => (i === 9 ? l.replace(/,0\.\d+,A,/, ',1,2,A,') : l)).join('\n')), /expected 8 fields/);
    await assert.rejects(parse(lines.map((l, i) => (i === 9 ? l.replace(/,A,Consumption/, ',X,Consumption') : l)).join('\n')), /ESTIMATED_ACTUAL "X"/);
    await assert.rejects(parse(lines.map((l, i) => (i === 9 ? l.replace("'10443720004766435", "'1044372") : l)).join('\n')), /not 17 or 22 digits/);
  });
});

describe('SMT LSE', () => {
  const lse = (values: string[], header = '00000001,10443720004766435,4,20251102000000,20251102235959,Y,N') =>
    [header, '00000002,0,0,1,0,1,0,900,KWH,,CST,,', '00000003,test cut', '00000004,20251103061500,SMT', ...chunk(values, 8).map((part, i) => `${10000001 + i},${part.join(',')}`)].join('\n');
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

  it('refuses unknown channels and units', async () => {
    await assert.rejects(parse(lse(triples(100), '00000001,10443720004766435,7,20251102000000,20251102235959,Y,N')), /channel "7"/);
    await assert.rejects(parse(lse(triples(100)).replace(',KWH,', ',GALLONS,')), /unit of measure "GALLONS"/);
  });
});

describe('S3 notifications and content sniffing', () => {
  it('decodes URL-encoded keys and ignores the test event', () => {
    const body = JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', s3: { object: { key: 'smt/intervaldata/Interval+Usage%2B1.asc' } } }] });
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
