/**
 * Certificate rotation end to end on real parts: the agent in-process polling simulated meters, the
 * local mTLS broker with IoT's certificate registry in moto (CONNECT checks status and attachment;
 * the CreateCertificateFromCsr MQTT API signs with the dev CA), the fleet core on the rotation
 * notices (moto: activate + attach the new certificate, revoke + detach the old one), the ingest
 * core and DynamoDB Local.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { DescribeCertificateCommand, ListThingPrincipalsCommand } from '@aws-sdk/client-iot';
import { silentLog } from '../../shared/log.ts';
import { parseConfig, type GatewayConfigInput } from '../../gateway/src/config.ts';
import { startGatewayAgent } from '../../gateway/src/agent.ts';
import { certificateIdOfFile } from '../../gateway/src/rotation.ts';
import { SIMULATED_CHANNEL, startSimulatedMeters } from '../../gateway/src/simulated-meter.ts';
import { demoClock } from '../../gateway/src/clock.ts';
import { issueDeviceCert } from '../../local/dev-ca.ts';
import { demoClockConfig, startGatewayHarness, THING, waitFor, type GatewayHarness } from '../support/gateway-harness.ts';

const INTERVAL = 900;
const SPEEDUP = 4500;

let harness: GatewayHarness;

before(async () => {
  harness = await startGatewayHarness({ registry: true });
});

after(async () => {
  await harness?.close();
});

/** Whether a certificate/key pair gets a CONNACK from the broker (false: refused or closed). */
function connects(certFile: string, keyFile: string): Promise<boolean> {
  const base = harness.baseConfig('unused').iot;
  return new Promise((resolve) => {
    const client = connect({
      host: '127.0.0.1',
      port: harness.brokerPort,
      protocol: 'mqtts',
      cert: readFileSync(certFile),
      key: readFileSync(keyFile),
      ca: readFileSync(base.caFile),
      clientId: THING,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    const done = (ok: boolean) => {
      client.end(true);
      resolve(ok);
    };
    client.once('connect', () => done(true));
    client.once('error', () => done(false));
    client.once('close', () => done(false));
  });
}

describe('certificate rotation over MQTT (CreateCertificateFromCsr) with the cloud retiring the old certificate', () => {
  it('a forced rotation swaps the certificate with a reconnect, stores every reading once, and the old certificate no longer connects', async () => {
    const clockConfig = demoClockConfig(SPEEDUP, 4);
    const clock = demoClock(Date.parse(clockConfig.virtualStart), Date.parse(clockConfig.realStart), SPEEDUP);
    const sim = await startSimulatedMeters({ count: 3, clock, stepSeconds: INTERVAL, idPrefix: 'rot-' });
    const base = harness.baseConfig(join(harness.dir, 'spool-rotation'));
    const oldCertificateId = certificateIdOfFile(base.iot.certFile);
    const config = parseConfig({
      ...base,
      meters: sim.meterConfigs(),
      polling: { intervalSeconds: INTERVAL, timeoutMs: 150, maxReadDelaySeconds: 850 },
      publish: { holdSeconds: 0, drainStartDelayMaxSeconds: 0.2 },
      rotation: { checkEverySeconds: 0.3, activationWaitSeconds: 0.5, responseTimeoutSeconds: 20 },
      health: { reportEverySeconds: 0.5 },
      demoClock: clockConfig,
    } satisfies GatewayConfigInput);
    const agent = await startGatewayAgent(config, { log: silentLog });
    let newCertificateId: string;
    try {
      await waitFor(() => agent.status().publisher.messagesAcked >= 2, 15_000, 'first acknowledged messages');
      assert.equal(agent.status().rotation?.certificateId, oldCertificateId);
      agent.rotateNow();
      await waitFor(() => (agent.status().rotation?.rotationsCompleted ?? 0) >= 1, 60_000, 'the rotation to complete');
      newCertificateId = agent.status().rotation!.certificateId;
      assert.notEqual(newCertificateId, oldCertificateId, 'the agent connects with a new certificate');
      await waitFor(
        () => harness.fleetOutcomes.some((o) => o.kind === 'rotation' && o.outcome.ok && o.outcome.action === 'retired'),
        20_000,
        'the old certificate retired',
      );
      // Readings keep flowing over the new certificate.
      const acked = agent.status().publisher.messagesAcked;
      await waitFor(() => agent.status().publisher.messagesAcked >= acked + 2, 15_000, 'messages acknowledged after the swap');
      for (let i = 0; i < sim.meters.length; i++) sim.setFault(i, 'exception');
      await waitFor(() => agent.status().spool.depth === 0, 20_000, 'the spool to drain');
      await waitFor(() => harness.fleetOutcomes.some((o) => o.kind === 'status'), 10_000, 'a status report');
    } finally {
      await agent.stop();
      await sim.stop();
    }
    await harness.drained();

    // The cloud: new certificate ACTIVE and the only one attached; the old one REVOKED.
    const iot = harness.registry!.iot;
    const describe = async (certificateId: string) =>
      (await iot.send(new DescribeCertificateCommand({ certificateId }))).certificateDescription?.status;
    assert.equal(await describe(newCertificateId), 'ACTIVE');
    assert.equal(await describe(oldCertificateId), 'REVOKED');
    const { principals = [] } = await iot.send(new ListThingPrincipalsCommand({ thingName: THING }));
    assert.deepEqual(
      principals.map((arn) => arn.split('/').at(-1)),
      [newCertificateId],
      'only the new certificate is attached to the thing',
    );
    assert.ok(
      harness.publishedWith.includes(oldCertificateId) && harness.publishedWith.at(-1) === newCertificateId,
      'publishes came over both, the last over the new one',
    );

    // The old certificate no longer connects (the broker checks the registry); the new one does.
    assert.equal(await connects(base.iot.certFile, base.iot.keyFile), false, 'the revoked certificate is refused');
    const current = agent.status().rotation!;
    assert.equal(current.phase, 'idle');
    const credentials = JSON.parse(readFileSync(join(harness.dir, 'spool-rotation', 'credentials', 'current.json'), 'utf8')) as {
      certFile: string;
      keyFile: string;
    };
    assert.equal(statSync(credentials.keyFile).mode & 0o777, 0o600, 'the new key is 0600');
    assert.equal(await connects(credentials.certFile, credentials.keyFile), true, 'the new certificate connects');

    // No reading lost or doubled: every reading taken is stored exactly once.
    const taken = agent.status().poller.readingsTaken;
    let stored = 0;
    for (const [index, meter] of sim.meters.entries()) {
      const readings = await harness.readings(meter.meterId, SIMULATED_CHANNEL, new Date(Date.parse(clockConfig.virtualStart)), new Date());
      stored += readings.length;
      const starts = readings.map((r) => (r.kind === 'interval' ? r.start.getTime() : 0));
      assert.equal(new Set(starts).size, starts.length, `${meter.meterId}: no interval stored twice`);
      for (const reading of readings)
        if (reading.kind === 'interval' && reading.quality !== 'estimated')
          assert.equal(reading.value, sim.intervalKwh(index, reading.start.getTime() / 1000, INTERVAL));
    }
    assert.equal(stored, taken, 'every reading taken is stored once');
    const conflicts = harness.outcomes.reduce((sum, o) => sum + (o.status === 'stored' ? o.counts.conflict : 0), 0);
    assert.equal(conflicts, 0, 'no reading stored with two values');
  });

  it('a certificate from the CA that IoT does not know is refused at CONNECT', async () => {
    const ca = { certPath: harness.baseConfig('x').iot.caFile, keyPath: join(harness.dir, 'ca.key.pem') };
    const unregistered = await issueDeviceCert(ca, join(harness.dir, 'unregistered'), THING);
    assert.equal(await connects(unregistered.certPath, unregistered.keyPath), false);
  });
});
