/**
 * Lambda entry for gateway events: the fleet topic rule invokes it (asynchronously) with one
 * rotation notice or status report (lambdas/core/gateway-fleet.ts). Thin: the IoT client and the
 * metrics wiring are built once per container; the middleware flushes the invocation's metrics.
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { IoTClient } from '@aws-sdk/client-iot';
import { requiredEnv } from './core/env.ts';
import { handleGatewayEvent, type GatewayEventOutcome, type GatewayEventRecord } from './core/gateway-fleet.ts';
import { Metrics } from './core/metrics.ts';
import { DEFAULT_STAGE } from './core/wiring.ts';
import { createLogger, lambdaHandler } from './observability.ts';

const { logger, log } = createLogger('gateway-fleet');
const iot = new IoTClient({});
const cloudwatch = new CloudWatchClient({});
const policyName = requiredEnv('GATEWAY_POLICY_NAME');
const defaultDimensions = { Stage: process.env.STAGE ?? DEFAULT_STAGE, Source: 'iot' };
const wiring = { metrics: () => new Metrics({ client: cloudwatch, defaultDimensions, log }) };

export const handler = lambdaHandler<GatewayEventRecord, GatewayEventOutcome>(logger, wiring, (event, { metrics }) =>
  handleGatewayEvent(event, { iot, policyName, metrics, log }),
);
