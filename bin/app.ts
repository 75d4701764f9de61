/**
 * CDK app entry: `npx cdk synth` (stage from cdk.json) or `npx cdk synth -c meterbridge:stage=prod`.
 *
 * Synth needs no AWS credentials: the stack is environment-agnostic unless the CLI supplies an
 * account and region, and nothing in it performs a context lookup.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { MeterbridgeStack } from '../lib/meterbridge-stack.ts';
import { loadStageSettings } from '../lib/settings.ts';

const app = new App();
const settings = loadStageSettings(app);

new MeterbridgeStack(app, `Meterbridge-${settings.stage}`, {
  settings,
  // Set by the CLI from the current credentials/profile; unset offline, which keeps the stack environment-agnostic.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: `meterbridge smart-meter ingestion pipeline (${settings.stage})`,
});

// Synth fails on any unacknowledged AwsSolutions finding; acknowledgements live next to the
// resource they concern, each with its reason.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
