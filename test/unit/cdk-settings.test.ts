import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App, RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { DEFAULT_ALARM_SETTINGS, loadStageSettings, parseStageSettings, StageSettingsError } from '../../lib/settings.ts';
import { parseSmtSettings } from '../../lib/smt-settings.ts';
import { DEFAULT_READY_SETTINGS } from '../../lib/ready-settings.ts';
import { TEST_STAGE_RAW } from '../fixtures/stage-settings.ts';

const stagesWith = (settings: Record<string, unknown>): Record<string, unknown> => ({
  dev: { ...TEST_STAGE_RAW, ...settings },
  prod: { ...TEST_STAGE_RAW, logRetentionDays: 365 },
});

/** Asserts a StageSettingsError whose message starts with the offending context key. */
function assertRejects(run: () => unknown, key: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof StageSettingsError, `expected StageSettingsError, got ${String(error)}`);
    assert.ok(error.message.startsWith(`${key}: `), `message should name ${key}: ${error.message}`);
    return true;
  });
}

describe('parseStageSettings', () => {
  it('turns valid settings into typed values', () => {
    // GIVEN
    const stages = stagesWith({ alarmEmail: 'ops@example.com', removalPolicy: 'destroy' });

    // WHEN
    const settings = parseStageSettings('dev', stages);

    // THEN
    assert.deepEqual(settings, {
      stage: 'dev',
      alarmEmail: 'ops@example.com',
      blockTimeZone: 'America/Chicago',
      logRetention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
      deletionProtection: false,
      alarms: DEFAULT_ALARM_SETTINGS,
      // No smt block: SMT deployed but switched off, with the stage's default secret names.
      smt: parseSmtSettings(undefined, 'meterbridge:stages.dev.smt', 'dev'),
      ready: DEFAULT_READY_SETTINGS,
    });
  });

  it('treats an empty alarm e-mail as none', () => {
    assert.equal(parseStageSettings('dev', stagesWith({ alarmEmail: '' })).alarmEmail, undefined);
  });

  it('protects prod tables from deletion unless told otherwise', () => {
    assert.equal(parseStageSettings('prod', stagesWith({})).deletionProtection, true);
    assert.equal(parseStageSettings('dev', stagesWith({})).deletionProtection, false);
  });

  it('defaults to the dev stage', () => {
    assert.equal(parseStageSettings(undefined, stagesWith({})).stage, 'dev');
  });

  it('accepts stages passed as a JSON string, as `cdk -c` does', () => {
    assert.equal(parseStageSettings('dev', JSON.stringify(stagesWith({}))).logRetention, logs.RetentionDays.ONE_MONTH);
  });

  it('rejects an unknown stage, naming the stage key', () => {
    assertRejects(() => parseStageSettings('qa', stagesWith({})), 'meterbridge:stage');
  });

  it('rejects a time zone Intl does not know', () => {
    assertRejects(() => parseStageSettings('dev', stagesWith({ blockTimeZone: 'America/Chicgo' })), 'meterbridge:stages.dev.blockTimeZone');
  });

  it('rejects a retention CloudWatch Logs does not offer', () => {
    assertRejects(() => parseStageSettings('dev', stagesWith({ logRetentionDays: 31 })), 'meterbridge:stages.dev.logRetentionDays');
  });

  it('rejects a malformed e-mail address', () => {
    assertRejects(() => parseStageSettings('dev', stagesWith({ alarmEmail: 'ops at example.com' })), 'meterbridge:stages.dev.alarmEmail');
  });

  it('rejects an unknown removal policy', () => {
    assertRejects(() => parseStageSettings('dev', stagesWith({ removalPolicy: 'snapshot' })), 'meterbridge:stages.dev.removalPolicy');
  });

  it('rejects deletion protection on a stage whose resources are destroyed', () => {
    assertRejects(
      () => parseStageSettings('dev', stagesWith({ removalPolicy: 'destroy', deletionProtection: true })),
      'meterbridge:stages.dev.deletionProtection',
    );
  });

  it('rejects a misspelt setting instead of silently using a default', () => {
    assertRejects(() => parseStageSettings('dev', stagesWith({ logRetentionDay: 30 })), 'meterbridge:stages.dev.logRetentionDay');
  });

  it('rejects missing stage settings', () => {
    assertRejects(() => parseStageSettings('dev', undefined), 'meterbridge:stages');
  });
});

describe('loadStageSettings', () => {
  it('reads the stage selected in the app context', () => {
    // GIVEN
    const app = new App({ context: { 'meterbridge:stage': 'prod', 'meterbridge:stages': stagesWith({}) } });

    // WHEN
    const settings = loadStageSettings(app);

    // THEN
    assert.equal(settings.stage, 'prod');
    assert.equal(settings.logRetention, logs.RetentionDays.ONE_YEAR);
  });
});

describe('cdk.json', () => {
  const { context } = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
  const stages = context['meterbridge:stages'] as Record<string, unknown>;

  for (const stage of Object.keys(stages)) {
    it(`has valid settings for the ${stage} stage`, () => {
      assert.equal(parseStageSettings(stage, stages).stage, stage);
    });
  }

  it('selects a stage it defines', () => {
    assert.doesNotThrow(() => parseStageSettings(context['meterbridge:stage'], stages));
  });
});
