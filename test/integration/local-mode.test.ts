/**
 * Local mode end to end, bounded: three gateways (agent child processes) polling simulated Modbus
 * meters, the SMT servers with GnuPG files (DST days, a re-delivery), the READY sender; the IoT
 * broker is taken down for a while and a gateway is SIGKILLed and restarted. Every reading the
 * simulators produced must be stored exactly once (runLocalMode's own check), and the printed
 * mosquitto_pub and readings query lines must work as printed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runLocalMode, type LocalSource } from '../../local/local-mode.ts';
import { startLocalPlatform, type LocalPlatform } from '../../local/platform.ts';
import { iotSource, type IotSource } from '../../local/sources/iot.ts';
import { readySource } from '../../local/sources/ready.ts';
import { smtSource } from '../../local/sources/smt.ts';
import { freeLocalPorts as freePorts } from '../support/local-ports.ts';

const run = promisify(execFile);
const repo = new URL('../..', import.meta.url).pathname;

let stateDir: string;
before(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'mb-local-e2e-'));
});
after(async () => rm(stateDir, { recursive: true, force: true }));

describe('local mode end to end', () => {
  it('stores every simulated reading exactly once through a broker outage and a gateway SIGKILL', { timeout: 240_000 }, async () => {
    const ports = await freePorts();
    let iot: IotSource | undefined;
    const output: string[] = [];
    const summary = await runLocalMode({
      ports,
      stateDir,
      sources: [
        async (platform) =>
          (iot = await iotSource(platform, { gateways: 3, metersPerGateway: 3, stateDir, modbusBasePort: ports.modbus, speedup: 450 })),
        (platform) => smtSource(platform, { stateDir, ftpsPort: ports.ftps, sftpPort: ports.sftp, fetchEveryMs: 3000, newFileEveryMs: 9000 }),
        (platform) => readySource(platform, { port: ports.ready, meters: 4, everyMs: 2000 }),
      ],
      durationMs: 40_000,
      brokerOutage: { afterMs: 8000, forMs: 10_000 },
      schedule: [{ atMs: 24_000, label: 'SIGKILL gateway 1', run: async () => iot!.killGateway(0, 1500) }],
      progressIntervalMs: 10_000,
      out: (text) => void output.push(text),
      err: () => {},
    });

    const text = output.join('');
    assert.equal(summary.ok, true, text);
    for (const source of ['iot', 'smt', 'ready']) {
      const result = summary.perSource[source]!;
      assert.ok(result.report.expected > 0, `${source} produced readings`);
      assert.equal(result.report.lost.length, 0, `${source}: nothing lost`);
      assert.equal(result.report.doubled, 0, `${source}: nothing stored twice`);
      assert.equal(result.report.found, result.report.expected);
    }
    // The SMT re-delivery and the first file overlap by a whole day: whichever is processed second
    // is superseded (or stale, when a retry reorders them), never stored again.
    const smt = summary.perSource.smt!;
    assert.ok(smt.superseded + smt.stale > 0, `the re-delivered SMT day superseded the first: ${text}`);
    // LSE files went the whole way too (fetch, archive, GnuPG decrypt, parse, store): every one of their readings found.
    assert.match(text, /ok {3}LSE files: [1-9]\d* file\(s\), produced ([1-9]\d*) readings, found \1 stored, lost 0/);
    // Each READY delivery was posted twice; the second was absorbed by the ledger.
    assert.ok(summary.perSource.ready!.resent > 0, `READY re-sends absorbed: ${text}`);
    assert.match(text, /Every simulated reading was stored exactly once/);
    // Latency end to end: per source, steady, and the IoT backlog the broker outage held back.
    const latency = new Map(summary.latency.map((f) => [`${f.source} ${f.phase}`, f]));
    // A heavily loaded machine can start the sources so late that the run ends before its outage: then there is no backlog to time.
    const keys = ['iot steady', 'smt steady', 'ready steady', ...(summary.outages.length > 0 ? ['iot backlog'] : [])];
    for (const key of keys) {
      const f = latency.get(key);
      assert.ok(f && f.count > 0, `latency ${key} measured: ${text}`);
      assert.ok(f.p50 >= 0 && f.p50 <= f.p95 && f.p95 <= f.p99 && f.p99 <= f.max, `latency ${key} percentiles in order: ${JSON.stringify(f)}`);
    }
    assert.ok(summary.observerLag !== undefined, 'the observer checked itself against the blocks write stamps');
    assert.match(text, /Latency end to end[^]*?\n\s+iot\s+steady\s+n=\s*\d+\s+p50 [\d.]+ s\s+p95 [\d.]+ s\s+p99 [\d.]+ s/);
  });

  it('the printed mosquitto_pub and curl lines store readings that the printed readings query lines show', { timeout: 120_000 }, async (t) => {
    const hasMosquitto = await run('sh', ['-c', 'command -v mosquitto_pub']).then(
      () => true,
      () => false,
    );
    if (!hasMosquitto) {
      t.skip('mosquitto_pub is not installed (scripts/setup.sh installs it)');
      return;
    }
    const ports = await freePorts();
    let platform: LocalPlatform | undefined;
    let source: LocalSource | undefined;
    let ready: LocalSource | undefined;
    try {
      platform = await startLocalPlatform({ ports, stateDir: join(stateDir, 'join') });
      source = await iotSource(platform, { gateways: 1, metersPerGateway: 1, stateDir: join(stateDir, 'join'), modbusBasePort: ports.modbus });
      const hints = source.joinHints();
      const start = hints.findIndex((line) => line.trim().startsWith('mosquitto_pub'));
      const publish = hints
        .slice(start, start + 4)
        .map((line) => line.trim().replace(/\\$/, ''))
        .join(' ');
      const query = hints.find((line) => line.includes('readings query'))!.replace(/^\s*then:\s*/, '');
      await run('bash', ['-c', publish], { cwd: repo, timeout: 20_000 });
      await platform.iotQueue.whenEmpty();
      const { stdout } = await run('bash', ['-c', query], { cwd: repo, timeout: 60_000 });
      const lines = stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { meterId: string; value: number; channel: string });
      assert.deepEqual(
        lines.map((l) => [l.meterId, l.channel, l.value]),
        [['cli-meter', 'energy.active.import', 1.25]],
      );

      // The READY curl line, as printed.
      ready = await readySource(platform, { port: ports.ready, meters: 1, everyMs: 60_000 });
      const readyHints = ready.joinHints();
      const curlStart = readyHints.findIndex((line) => line.trim().startsWith('curl'));
      const curl = readyHints
        .slice(curlStart, curlStart + 2)
        .map((line) => line.trim().replace(/\\$/, ''))
        .join(' ');
      const readyQuery = readyHints.find((line) => line.includes('readings query'))!.replace(/^\s*then:\s*/, '');
      const posted = await run('bash', ['-c', `${curl} -w ' HTTP %{http_code}'`], { cwd: repo, timeout: 20_000 });
      assert.match(posted.stdout, /HTTP 200$/, posted.stdout);
      const shown = await run('bash', ['-c', readyQuery], { cwd: repo, timeout: 60_000 });
      const readyLines = shown.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { meterId: string; value: number; channel: string });
      assert.deepEqual(
        readyLines.map((l) => [l.meterId, l.channel, l.value]),
        [['kamstrup-curl', 'water.volume', 12.5]],
      );
    } finally {
      await ready?.stop();
      await source?.stop();
      await platform?.stop();
    }
  });
});
