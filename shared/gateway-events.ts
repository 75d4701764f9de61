/**
 * The gateway events contract v1: what a gateway publishes on the fleet rule's Basic Ingest topics
 * (shared/telemetry.ts gatewayEventTopic), read by the fleet function (lambdas/core/gateway-fleet.ts).
 *
 *   rotation  { "v": 1, "gatewayId", "sentAt", "phase": "activate", "certificateId": <new> }
 *             { "v": 1, "gatewayId", "sentAt", "phase": "retire",   "certificateId": <old> }
 *   status    { "v": 1, "gatewayId", "sentAt", "version", "spoolDepth", "oldestUnsentSeconds",
 *               "readErrors", "clock", "certificate": { "id", "notBefore", "notAfter" } }
 *
 * `activate` is sent over the OLD certificate's connection (the new one cannot connect before it is
 * active and attached); `retire` over the NEW one. The rule adds `principal()` (the certificate id
 * of the connection) and the function checks it against the thing's attachments, so a notice can
 * only ever act on the certificates of the thing that sent it.
 */
import { z } from 'zod';
import { THING_NAME_PATTERN, THING_NAME_RULE } from './telemetry.ts';
import { parseUntrustedJson } from './untrusted-json.ts';

/** IoT certificate ids: the SHA-256 of the certificate's DER, lower-case hex. */
export const CERTIFICATE_ID_PATTERN = /^[0-9a-f]{64}$/;

const common = {
  v: z.literal(1),
  gatewayId: z.string().regex(THING_NAME_PATTERN, THING_NAME_RULE),
  sentAt: z.iso.datetime({ offset: true }),
};

export const rotationNoticeSchema = z.strictObject({
  ...common,
  phase: z.enum(['activate', 'retire']),
  certificateId: z.string().regex(CERTIFICATE_ID_PATTERN, 'must be an IoT certificate id (64 hex digits)'),
});
export type RotationNotice = z.output<typeof rotationNoticeSchema>;

export const statusReportSchema = z.strictObject({
  ...common,
  version: z.string().max(64),
  spoolDepth: z.number().int().min(0),
  /** Age of the oldest reading not yet acknowledged, seconds; 0 when the spool is empty. */
  oldestUnsentSeconds: z.number().min(0),
  /** Meter read errors since the previous report. */
  readErrors: z.number().int().min(0),
  clock: z.enum(['synchronized', 'unsynchronized', 'unknown']),
  certificate: z.strictObject({
    id: z.string().regex(CERTIFICATE_ID_PATTERN),
    notBefore: z.iso.datetime({ offset: true }),
    notAfter: z.iso.datetime({ offset: true }),
  }),
});
export type StatusReport = z.output<typeof statusReportSchema>;

/** Events are small: a status report is a few hundred bytes. */
export const MAX_GATEWAY_EVENT_BYTES = 4096;
const MAX_EVENT_DEPTH = 4;

export type GatewayEventDecode<T> = { ok: true; event: T } | { ok: false; reason: string };

/** Decodes one event payload strictly. Never throws. */
export function decodeGatewayEvent<T>(payload: Uint8Array, schema: z.ZodType<T>): GatewayEventDecode<T> {
  if (payload.byteLength > MAX_GATEWAY_EVENT_BYTES)
    return { ok: false, reason: `event is ${payload.byteLength} bytes; the limit is ${MAX_GATEWAY_EVENT_BYTES}` };
  const json = parseUntrustedJson(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'), MAX_EVENT_DEPTH);
  if (!json.ok) return { ok: false, reason: json.reason };
  const parsed = schema.safeParse(json.value);
  if (!parsed.success)
    return {
      ok: false,
      reason: parsed.error.issues
        .slice(0, 5)
        .map((issue) => `${issue.path.join('.') || 'event'}: ${issue.message}`)
        .join('; '),
    };
  return { ok: true, event: parsed.data };
}
