import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CSV_HEADER, csvRow, readingsCsv } from '../../lambdas/core/query/formats.ts';
import { readingsEspi, scaleValues } from '../../lambdas/core/query/espi.ts';
import { readEspi, validateEspi } from '../support/espi.ts';
import { day, interval, register } from '../support/readings.ts';

const generatedAt = new Date('2026-11-30T00:00:00Z');
const zone = 'America/Chicago';

describe('CSV', () => {
  it('writes the header, intervals with start and end, registers with at in start and an empty end', () => {
    const csv = readingsCsv([
      interval({ meterId: 'm1', value: 0.731, quality: 'estimated', revision: 3 }),
      register({ meterId: 'm1', at: '2026-03-10T12:00:00Z', value: 1234.567 }),
    ]);

    assert.deepEqual(csv.split('\r\n'), [
      CSV_HEADER,
      'm1,energy.active.import,2026-03-10T06:00:00.000Z,2026-03-10T06:15:00.000Z,0.731,kWh,estimated,3,smt',
      'm1,water.volume,2026-03-10T12:00:00.000Z,,1234.567,m3,actual,0,ready',
      '',
    ]);
    assert.equal(CSV_HEADER, 'meterId,channel,start,end,value,unit,quality,revision,source');
  });

  it('keeps every value exactly (shortest round-trip decimal)', () => {
    for (const value of [0.1 + 0.2, 1e-7, 123456789.125, -4.5]) {
      assert.equal(Number(csvRow(interval({ value })).split(',')[4]), value);
    }
  });
});

describe('Green Button (ESPI)', () => {
  it('scales values to whole numbers with the largest schema multiplier', () => {
    assert.deepEqual(scaleValues([0.731, 1.5], 'kWh'), { multiplier: 0, scaled: [731, 1500] });
    assert.deepEqual(scaleValues([2, 3], 'kWh'), { multiplier: 3, scaled: [2, 3] });
    assert.deepEqual(scaleValues([0.0001], 'kWh'), { multiplier: -1, scaled: [1] });
    assert.deepEqual(scaleValues([1.25], 'm3'), { multiplier: -2, scaled: [125] });
    assert.deepEqual(scaleValues([1.5], 'gal/min'), { multiplier: 0, scaled: [90] }); // gal/h
  });

  it('validates against the ESPI schema: a normal day, both DST days, estimates, registers and an export channel', async () => {
    const readings = [
      ...day('2026-03-08T06:00:00Z', 92, { meterId: 'esiid-9', quality: 'estimated' }, (i) => i / 1000), // spring forward: 23 h
      ...day('2026-03-09T05:00:00Z', 96, { meterId: 'esiid-9' }, (i) => i / 8),
      ...day('2026-11-01T05:00:00Z', 100, { meterId: 'esiid-9' }, (i) => i), // fall back: 25 h
      ...day('2026-03-09T05:00:00Z', 4, { meterId: 'esiid-9', channel: 'energy.active.export' }),
      register({ meterId: 'esiid-9', at: '2026-03-09T12:00:00Z', value: 1234.567 }),
    ];

    const xml = readingsEspi('esiid-9', readings, { timeZone: zone, generatedAt });

    const validation = await validateEspi(xml);
    assert.ok(validation.ok, validation.output);
    const { blocks, readingTypes } = readEspi(xml);
    const energy = blocks.filter((b) => b.readings[0]?.duration === 900 && b.readings.length >= 92);
    assert.deepEqual(
      energy.map((b) => [b.duration, b.readings.length]),
      [
        [82_800, 92],
        [86_400, 96],
        [90_000, 100],
      ],
    );
    assert.equal(energy[0]!.start, Date.parse('2026-03-08T06:00:00Z') / 1000);
    assert.equal(energy[2]!.start, Date.parse('2026-11-01T05:00:00Z') / 1000);
    assert.ok(energy[0]!.readings.every((r) => r.quality === 8));
    assert.ok(energy[1]!.readings.every((r) => r.quality === undefined));
    assert.deepEqual(readingTypes.get('energy.active.import (kWh, 900 s)'), {
      accumulationBehaviour: 4,
      commodity: 1,
      flowDirection: 1,
      intervalLength: 900,
      kind: 12,
      powerOfTenMultiplier: 0,
      uom: 72,
    });
    assert.equal(readingTypes.get('energy.active.export (kWh, 900 s)')!.flowDirection, 19);
    assert.deepEqual(readingTypes.get('water.volume (m3, register)'), {
      accumulationBehaviour: 1,
      commodity: 9,
      flowDirection: 1,
      intervalLength: 0,
      powerOfTenMultiplier: -3,
      uom: 42,
    });
    // Values back: value x 10^multiplier Wh = kWh x 1000.
    assert.equal(energy[1]!.readings[5]!.value, (5 / 8) * 1000);
  });

  it('the schema check can fail: a fractional value or a misplaced element is refused', async () => {
    const xml = readingsEspi('m', [interval({ meterId: 'm' })], { timeZone: zone, generatedAt });
    assert.equal((await validateEspi(xml.replace(/<espi:value>(\d+)<\/espi:value>/, '<espi:value>$1.5</espi:value>'))).ok, false);
    assert.equal(
      (
        await validateEspi(
          xml.replace('<espi:commodity>1</espi:commodity>', '').replace('<espi:uom>', '<espi:commodity>1</espi:commodity><espi:uom>'),
        )
      ).ok,
      false,
    );
  });
});
