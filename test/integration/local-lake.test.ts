/**
 * Local mode's data lake end to end: a short run of local mode (SMT files with revisions and
 * re-deliveries, READY webhooks), the readings feed reading DynamoDB Local's stream, Parquet files
 * in the local S3 stand-in; then the lake, read back by DuckDB, against the store: the latest
 * revision per interval has exactly the store's readings and the same per-source sums, and
 * `meterbridge readings sql` prints the same numbers from the state folder after local mode stopped.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../bin/meterbridge.ts';
import { runLocalMode } from '../../local/local-mode.ts';
import { readySource } from '../../local/sources/ready.ts';
import { smtSource } from '../../local/sources/smt.ts';
import { freeLocalPorts } from '../support/local-ports.ts';

let stateDir: string;
before(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'mb-local-lake-'));
});
after(async () => rm(stateDir, { recursive: true, force: true }));

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: {} });
  return { code, stdout, stderr };
}

describe('local mode data lake', () => {
  it(
    'holds, as the latest revision per interval, exactly the readings of the store with the same per-source sums',
    { timeout: 300_000 },
    async () => {
      const ports = await freeLocalPorts();
      const output: string[] = [];
      const summary = await runLocalMode({
        ports,
        stateDir,
        sources: [
          (platform) => smtSource(platform, { stateDir, ftpsPort: ports.ftps, sftpPort: ports.sftp, fetchEveryMs: 3000, newFileEveryMs: 6000 }),
          (platform) => readySource(platform, { port: ports.ready, meters: 3, everyMs: 2000 }),
        ],
        durationMs: 15_000,
        progressIntervalMs: 15_000,
        out: (text) => void output.push(text),
        err: () => {},
      });
      const text = output.join('');

      // THEN local mode's own check passed, on a lake that is not empty
      assert.equal(summary.ok, true, text);
      const lake = summary.lake!;
      assert.ok(lake, text);
      assert.ok(lake.storeReadings > 0, 'the store holds readings');
      assert.equal(lake.latest, lake.storeReadings, 'latest revision per interval = the store');
      assert.ok(lake.rows >= lake.latest, 'superseded revisions stay');
      assert.deepEqual(Object.keys(lake.perSource).sort(), ['ready', 'smt']);
      for (const [source, { store, lake: inLake }] of Object.entries(lake.perSource)) {
        assert.equal(inLake.count, store.count, `${source} count`);
        assert.ok(Math.abs(inLake.sum - store.sum) < 1e-6 * Math.max(1, store.sum), `${source} sum ${inLake.sum} vs ${store.sum}`);
      }
      assert.ok(summary.feedEvents > 0, 'events were put on the bus');
      assert.match(text, /ok {3}feed {2}\d+ events on the bus/);

      // AND the CLI reads the same from the state folder after local mode stopped
      const result = await cli([
        'readings',
        'sql',
        'SELECT source, count(*) AS n, sum(value) AS total FROM readings_latest GROUP BY source ORDER BY source',
        '--state-dir',
        stateDir,
        '--format',
        'json',
      ]);
      assert.equal(result.code, 0, result.stderr);
      const rows = result.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { source: string; n: string | number; total: number });
      assert.deepEqual(
        rows.map((row) => [row.source, Number(row.n)]),
        Object.entries(lake.perSource)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([source, { store }]) => [source, store.count]),
      );
      for (const row of rows) assert.ok(Math.abs(row.total - lake.perSource[row.source]!.store.sum) < 1e-6 * Math.max(1, row.total));
      const table = await cli(['readings', 'sql', 'SELECT count(*) AS rows FROM readings', '--state-dir', stateDir]);
      assert.match(table.stdout, new RegExp(`^rows\\n-+\\n${lake.rows} *\\n\\(1 row\\)`, 'm'));
    },
  );
});
