/**
 * READY in local mode: the webhook handler behind the local API Gateway adapter on its fixed
 * port, and a simulated READY that does the verification handshake, then posts one delivery of
 * hourly 15-minute values per simulated hour (one hour every few seconds), each delivery sent
 * twice (READY retries) so the duplicate path is exercised.
 */
import { mapDelivery } from '../../lambdas/core/ready/delivery.ts';
import { readingToExpected } from '../progress.ts';
import type { ExpectedReading } from '../progress.ts';
import type { LocalSource } from '../local-mode.ts';
import { originOf, type LatencyOrigin } from '../latency.ts';
import { LOCAL_BUCKETS, queryEndpointFlag, type LocalPlatform } from '../platform.ts';
import { LOCAL_BLOCK_TIME_ZONE } from '../defaults.ts';
import {
  LOCAL_READY_CLIENT_SECRET,
  buildReadyDelivery,
  localReadyDependencies,
  readyHandshake,
  startReadyHttp,
  type SimulatedMeter,
} from '../ready-http.ts';
import { silentLog } from '../../shared/log.ts';

export interface ReadySourceOptions {
  port: number;
  meters: number;
  /** Real milliseconds between deliveries (each is one simulated hour). @default 3000 */
  everyMs?: number;
}

const SUBSCRIPTION = 'sub-local';

export async function readySource(platform: LocalPlatform, options: ReadySourceOptions): Promise<LocalSource> {
  const http = await startReadyHttp({
    port: options.port,
    handlerDeps: localReadyDependencies({
      dynamodb: platform.dynamo.client,
      tables: platform.tables,
      blockTimeZone: LOCAL_BLOCK_TIME_ZONE,
      s3: platform.s3.client,
      archiveBucket: LOCAL_BUCKETS.readyArchive,
      cloudwatch: platform.cloudwatch.client(),
      log: silentLog,
    }),
  });
  const handshake = await readyHandshake(http.dataUrl, { clientSecret: LOCAL_READY_CLIENT_SECRET });
  if (!handshake.ok) throw new Error(`READY handshake against the local webhook failed: HTTP ${handshake.status}, answer ${handshake.answer}`);

  const meters: SimulatedMeter[] = Array.from({ length: options.meters }, (_, i) => ({ meterId: `kamstrup-${String(71_000_000 + i)}` }));
  const expected: ExpectedReading[] = [];
  // Latency is timed from the first POST of a delivery (the retry's readings are duplicates).
  const origins: LatencyOrigin[] = [];
  // Simulated hours count back from the last full hour, so every delivery is in the past.
  const firstHour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 48 * 3_600_000;
  let hour = 0;
  let inFlight = 0;
  let failures = 0;
  let running = true;
  let wake: (value: unknown) => void = () => {};

  const sendOne = async () => {
    const start = new Date(firstHour + hour * 3_600_000);
    hour += 1;
    const deliveryId = `${SUBSCRIPTION}-${start.toISOString().replace(/[:.]/g, '')}`;
    const { body } = buildReadyDelivery({ deliveryId, subscriptionId: SUBSCRIPTION, meters, start, intervalsPerHour: 4 });
    const text = JSON.stringify(body);
    const mapped = mapDelivery(body, Buffer.from(text), { now: new Date() });
    if (!mapped.ok) throw new Error(`the simulated READY delivery does not map: ${mapped.reasons.join('; ')}`);
    inFlight += 1;
    const postedAt = Date.now();
    try {
      for (let attempt = 0; attempt < 2; attempt += 1) {
        const response = await fetch(http.dataUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
        await response.arrayBuffer();
        if (response.status >= 300) failures += 1;
        else if (attempt === 0) {
          expected.push(...mapped.readings.map(readingToExpected));
          origins.push(...mapped.readings.map((reading) => originOf(readingToExpected(reading), postedAt, reading.revision)));
        }
      }
    } finally {
      inFlight -= 1;
    }
  };

  const loop = (async () => {
    while (running) {
      await sendOne().catch(() => void (failures += 1));
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, options.everyMs ?? 3000).unref();
      });
    }
  })();

  return {
    source: 'ready',
    expected: () => expected,
    origins: () => origins,
    backlog: () => inFlight,
    async quiesce() {
      running = false;
      wake(undefined);
      await loop;
    },
    drained: async () => inFlight === 0,
    joinHints: () => [
      `  READY webhook (data callback), ${failures ? `${failures} failed posts so far; ` : ''}e.g.:`,
      `    curl -sS -X POST ${http.dataUrl} -H 'content-type: application/json' \\`,
      `      -d '{"deliveryId":"curl-1","subscriptionId":"${SUBSCRIPTION}","resource":"meterReadings","sentAt":"${new Date(firstHour + 3_600_000).toISOString()}","meters":[{"meterId":"kamstrup-curl","utility":"water","registers":[{"register":"volume","value":12.5,"unit":"m3","readAt":"${new Date(firstHour).toISOString()}"}]}]}'`,
      `    then: npx tsx bin/meterbridge.ts readings query --meter kamstrup-curl --channel water.volume${queryEndpointFlag(platform)}`,
    ],
    async stop() {
      running = false;
      wake(undefined);
      await loop;
      await http.stop();
    },
  };
}
