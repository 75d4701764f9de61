/**
 * Validates Green Button output against the pinned NAESB ESPI schema (test/fixtures/espi/) with
 * xmllint (Debian libxml2-utils, installed by scripts/setup.sh), and reads values back out.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ESPI_XSD = fileURLToPath(new URL('../fixtures/espi/espi.xsd', import.meta.url));

export async function validateEspi(xml: string): Promise<{ ok: boolean; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'espi-'));
  const file = join(dir, 'feed.xml');
  writeFileSync(file, xml);
  try {
    return await new Promise((resolve, reject) => {
      execFile('xmllint', ['--noout', '--nonet', '--schema', ESPI_XSD, file], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error('xmllint not found: apt-get install -y libxml2-utils (scripts/setup.sh does)'));
          return;
        }
        resolve({ ok: !error, output: `${stdout}${stderr}` });
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface EspiBlock {
  /** The MeterReading's title (channel, unit, interval length). */
  meterReading: string;
  start: number;
  duration: number;
  readings: Array<{ start: number; duration: number; value: number; quality?: number }>;
}

/**
 * A small reader for the feeds readingsEspi writes (one element per line group), enough for
 * tests to compare values with the other formats: ReadingTypes by MeterReading, blocks and readings.
 */
export function readEspi(xml: string): { readingTypes: Map<string, Record<string, number>>; blocks: EspiBlock[] } {
  const entries = [...xml.matchAll(/<entry>([\s\S]*?)<\/entry>/g)].map((m) => m[1]!);
  const readingTypes = new Map<string, Record<string, number>>();
  const blocks: EspiBlock[] = [];
  for (const entry of entries) {
    const title = /<title>([^<]*)<\/title>/.exec(entry)![1]!;
    const type = /<espi:ReadingType>([\s\S]*?)<\/espi:ReadingType>/.exec(entry);
    if (type) {
      const fields: Record<string, number> = {};
      for (const [, name, value] of type[1]!.matchAll(/<espi:(\w+)>(-?\d+)<\/espi:\1>/g)) fields[name!] = Number(value);
      readingTypes.set(title.replace(/ reading type$/, ''), fields);
    }
    const block =
      /<espi:IntervalBlock><espi:interval><espi:duration>(\d+)<\/espi:duration><espi:start>(\d+)<\/espi:start><\/espi:interval>([\s\S]*?)<\/espi:IntervalBlock>/.exec(
        entry,
      );
    if (block) {
      const readings = [
        ...block[3]!.matchAll(
          /<espi:IntervalReading>(?:<espi:ReadingQuality><espi:quality>(\d+)<\/espi:quality><\/espi:ReadingQuality>)?<espi:timePeriod><espi:duration>(\d+)<\/espi:duration><espi:start>(\d+)<\/espi:start><\/espi:timePeriod><espi:value>(-?\d+)<\/espi:value><\/espi:IntervalReading>/g,
        ),
      ].map((m) => ({ duration: Number(m[2]), start: Number(m[3]), value: Number(m[4]), ...(m[1] ? { quality: Number(m[1]) } : {}) }));
      const href = /<link rel="up" href="([^"]*)\/IntervalBlock"\/>/.exec(entry)![1]!;
      blocks.push({ meterReading: href, start: Number(block[2]), duration: Number(block[1]), readings });
    }
  }
  return { readingTypes, blocks };
}
