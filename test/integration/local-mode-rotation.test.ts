/**
 * Local mode with a forced certificate rotation (issue 17's acceptance): the gateways' certificates
 * are registered ACTIVE in IoT's registry (moto) at the start, one gateway is asked to rotate as
 * `meterbridge-gateway rotate` asks, and the fleet function's core activates the new certificate and
 * retires the old one. Checked from outside local mode's own summary, while its platform still runs:
 * the registry in moto, a real CONNECT with the old certificate, and every reading stored once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DescribeCertificateCommand, ListThingPrincipalsCommand } from '@aws-sdk/client-iot';
import { runLocalMode } from '../../local/local-mode.ts';
import { tryConnect } from '../../local/mqtt-broker.ts';
import type { LocalPlatform } from '../../local/platform.ts';
import { iotSource, type IotSource } from '../../local/sources/iot.ts';
import { freeLocalPorts as freePorts } from '../support/local-ports.ts';

let stateDir: string;
before(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'mb-local-rotation-'));
});
after(async () => rm(stateDir, { recursive: true, force: true }));

interface Observed {
  thingName: string;
  oldCertificateId: string;
  newCertificateId: string | undefined;
  oldStatus: string | undefined;
  newStatus: string | undefined;
  attached: string[];
  oldConnect: Awaited<ReturnType<typeof tryConnect>>;
  refusedAtBroker: number;
  probeConnect: Awaited<ReturnType<typeof tryConnect>>;
  fleet: LocalPlatform['fleetOutcomes'];
}

/** What moto and the broker say about the rotation (before the platform stops). */
async function observe(platform: LocalPlatform, iot: IotSource): Promise<Observed> {
  const [rotation] = iot.rotations();
  assert.ok(rotation, 'a rotation was forced');
  const client = platform.registry.iot;
  const status = async (certificateId: string | undefined) =>
    certificateId ? (await client.send(new DescribeCertificateCommand({ certificateId }))).certificateDescription?.status : undefined;
  const { principals = [] } = await client.send(new ListThingPrincipalsCommand({ thingName: rotation.thingName }));
  const port = platform.broker()!.port;
  const refusedBefore = platform.broker()!.stats.connectRefused;
  const oldConnect = await tryConnect({
    port,
    caPath: platform.ca.certPath,
    certPath: rotation.old.certPath,
    keyPath: rotation.old.keyPath,
    clientId: rotation.thingName,
  });
  const refusedAtBroker = platform.broker()!.stats.connectRefused - refusedBefore;
  // The same probe with a registered, ACTIVE, attached certificate connects: a refusal above is the registry's doing.
  const probe = await platform.issueDevice('rotation-probe');
  const probeConnect = await tryConnect({
    port,
    caPath: platform.ca.certPath,
    certPath: probe.certPath,
    keyPath: probe.keyPath,
    clientId: 'rotation-probe',
  });
  return {
    thingName: rotation.thingName,
    oldCertificateId: rotation.old.certificateId,
    newCertificateId: rotation.newCertificateId,
    oldStatus: await status(rotation.old.certificateId),
    newStatus: await status(rotation.newCertificateId),
    attached: principals.map((arn) => arn.split('/').at(-1)!),
    oldConnect,
    refusedAtBroker,
    probeConnect,
    fleet: [...platform.fleetOutcomes],
  };
}

/**
 * Ends the run (abort) once the gateway connects with its new certificate and every gateway committed
 * two more intervals after that: readings before, during and after the swap. A timer from the start
 * would race the platform's start-up on a loaded machine.
 */
async function endAfterSwap(source: IotSource, stop: AbortController, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let atSwap: number | undefined;
  const perInterval = 2 * 2; // gateways x meters
  while (Date.now() < deadline && !stop.signal.aborted) {
    const [rotation] = source.rotations();
    const swapped = rotation?.newCertificateId !== undefined && rotation.newCertificateId !== rotation.old.certificateId;
    if (swapped) {
      atSwap ??= source.expected().length;
      if (source.expected().length >= atSwap + 2 * perInterval) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  stop.abort();
}

describe('local mode: forced certificate rotation', () => {
  it(
    'swaps a gateway certificate with no reading lost or doubled; the old certificate is REVOKED and refused at CONNECT',
    { timeout: 180_000 },
    async () => {
      const ports = await freePorts();
      const stop = new AbortController();
      let observed: Observed | Error | undefined;
      const output: string[] = [];
      const summary = await runLocalMode({
        ports,
        stateDir,
        sources: [
          async (platform) => {
            const source = await iotSource(platform, { gateways: 2, metersPerGateway: 2, stateDir, modbusBasePort: ports.modbus, speedup: 450 });
            // Asked for as soon as the gateways start (a timer from the start would race the platform's start-up on a loaded
            // machine): the agent rotates once connected, while it polls and publishes; the drain waits for the swap.
            await source.rotateGateway(0);
            void endAfterSwap(source, stop);
            // runLocalMode stops the sources before the platform: observe moto and the broker then.
            return {
              ...source,
              async stop() {
                observed = await observe(platform, source).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
                await source.stop();
              },
            };
          },
        ],
        // Ends once readings flowed on after the swap (endAfterSwap); the duration is only a ceiling.
        durationMs: 150_000,
        signal: stop.signal,
        progressIntervalMs: 10_000,
        out: (text) => void output.push(text),
        err: (text) => void (process.env.DEBUG_LOCAL ? process.stderr.write(text) : undefined),
      });

      const text = output.join('');
      if (observed instanceof Error) throw observed;
      assert.ok(observed, 'observed before the stop');
      const o = observed;

      // moto: the new certificate ACTIVE and the only one attached to the thing; the old one REVOKED.
      assert.ok(o.newCertificateId && o.newCertificateId !== o.oldCertificateId, `the gateway connects with a new certificate: ${text}`);
      assert.equal(o.newStatus, 'ACTIVE');
      assert.equal(o.oldStatus, 'REVOKED');
      assert.deepEqual(o.attached, [o.newCertificateId], 'only the new certificate is attached');
      assert.ok(
        o.fleet.some(
          (f) => f.kind === 'rotation' && f.outcome.ok && f.outcome.action === 'activated' && f.outcome.certificateId === o.newCertificateId,
        ),
        'the fleet core activated the new certificate',
      );
      assert.ok(
        o.fleet.some((f) => f.kind === 'status' && f.thingName === o.thingName),
        'status reports reach the fleet core',
      );

      // The old certificate no longer connects: refused by the broker's registry check (a registered certificate does connect).
      assert.equal(o.oldConnect.connected, false, 'the revoked certificate is refused');
      assert.equal(o.refusedAtBroker, 1, 'the broker refused the CONNECT (not a TLS failure)');
      assert.equal(o.probeConnect.connected, true, 'an ACTIVE, attached certificate connects with the same probe');

      // No reading lost or doubled (local mode's own exactly-once check), and the summary names the rotation.
      assert.equal(summary.ok, true, text);
      const result = summary.perSource.iot!;
      assert.ok(result.report.expected > 0);
      assert.equal(result.report.lost.length, 0, 'nothing lost');
      assert.equal(result.report.doubled, 0, 'nothing stored twice');
      assert.equal(result.report.found, result.report.expected);
      assert.match(
        text,
        new RegExp(
          `ok {3}certificate rotation of ${o.thingName} .*${o.oldCertificateId.slice(0, 12)}… → ${o.newCertificateId.slice(0, 12)}…; new ACTIVE, the only one attached; old REVOKED, CONNECT with it refused`,
        ),
      );
      assert.match(text, /Every simulated reading was stored exactly once/);
    },
  );
});
