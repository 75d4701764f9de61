/**
 * The fleet function's core: one gateway event as the fleet topic rule hands it over
 * (lib/gateway-fleet.ts: `SELECT encode(*, 'base64') AS payload, topic() AS topic, principal() AS
 * principal, timestamp() AS receivedAt FROM 'gateways/+/+'`), i.e. a rotation notice (the cloud
 * side of certificate rotation, ./gateway-rotation.ts) or a status report (health metrics).
 *
 * Bad events are refused with a reason, a metric and a log line naming the gateway, and never
 * throw: IoT invokes the function asynchronously, and a retry cannot make a bad event good. IoT
 * control-plane errors do throw (Lambda retries the invocation; the gateway also re-sends its
 * notice until the rotation is done).
 */
import { decodeGatewayEvent, rotationNoticeSchema, statusReportSchema } from '../../shared/gateway-events.ts';
import type { Log } from '../../shared/log.ts';
import { gatewayEventFromTopic } from '../../shared/telemetry.ts';
import { handleRotationNotice, type RotationDeps, type RotationOutcome } from './gateway-rotation.ts';
import type { Metrics } from './metrics.ts';

/** What the fleet rule's SQL produces. */
export interface GatewayEventRecord {
  /** Base64 of the bytes the gateway published. */
  payload: string;
  /** `gateways/<thing>/<kind>` (Basic Ingest prefix removed by IoT). */
  topic: string;
  /** `principal()`: the id of the certificate the event came over. */
  principal: string;
  receivedAt: number;
}

export type GatewayEventOutcome =
  { kind: 'rotation'; outcome: RotationOutcome } | { kind: 'status'; thingName: string } | { kind: 'refused'; reason: string };

export interface FleetDeps extends RotationDeps {
  metrics: Metrics;
  log: Log;
}

const DAY_MS = 86_400_000;

export async function handleGatewayEvent(record: GatewayEventRecord, deps: FleetDeps): Promise<GatewayEventOutcome> {
  const { metrics, log } = deps;
  const refuse = (reason: string, extra: Record<string, unknown> = {}): GatewayEventOutcome => {
    log.warn('gateway event refused', { topic: String(record?.topic).slice(0, 200), reason, ...extra });
    return { kind: 'refused', reason };
  };
  const source = typeof record?.topic === 'string' ? gatewayEventFromTopic(record.topic) : undefined;
  if (!source || typeof record.payload !== 'string') {
    metrics.count('RotationsRefused', 1, { Reason: 'invalid' });
    return refuse('not a gateway event (topic gateways/<thing>/<rotation|status> and a base64 payload expected)');
  }
  const payload = Buffer.from(record.payload, 'base64');
  if (source.kind === 'status') {
    const decoded = decodeGatewayEvent(payload, statusReportSchema);
    if (!decoded.ok || decoded.event.gatewayId !== source.thingName)
      return refuse(decoded.ok ? 'gatewayId does not match the topic' : decoded.reason, { thingName: source.thingName });
    const report = decoded.event;
    const ageDays = Math.max(0, (record.receivedAt - Date.parse(report.certificate.notBefore)) / DAY_MS);
    metrics.count('GatewaysReporting');
    metrics.record('GatewaySpoolDepth', report.spoolDepth, 'None');
    metrics.record('GatewayOldestUnsentSeconds', report.oldestUnsentSeconds, 'Seconds');
    metrics.record('GatewayReadErrors', report.readErrors, 'Count');
    metrics.record('GatewayCertificateAgeDays', Math.round(ageDays * 10) / 10, 'None');
    // The metrics carry no gateway dimension (cardinality); this line names the gateway for the runbook's query.
    log.info('gateway status', { thingName: source.thingName, ...report, certificateAgeDays: Math.round(ageDays * 10) / 10 });
    return { kind: 'status', thingName: source.thingName };
  }
  const decoded = decodeGatewayEvent(payload, rotationNoticeSchema);
  if (!decoded.ok || decoded.event.gatewayId !== source.thingName || typeof record.principal !== 'string') {
    metrics.count('RotationsRefused', 1, { Reason: 'invalid' });
    return refuse(decoded.ok ? 'gatewayId does not match the topic, or no principal' : decoded.reason, { thingName: source.thingName });
  }
  const outcome = await handleRotationNotice(decoded.event, { thingName: source.thingName, principal: record.principal }, deps);
  if (outcome.ok) {
    if (outcome.action !== 'already-done') metrics.count('CertificatesRotated', 1, { Step: decoded.event.phase });
  } else {
    metrics.count('RotationsRefused', 1, { Reason: outcome.reason.includes('sending certificate') ? 'not-attached' : 'refused' });
    refuse(outcome.reason, { thingName: source.thingName, phase: decoded.event.phase, certificateId: outcome.certificateId });
  }
  return { kind: 'rotation', outcome };
}
