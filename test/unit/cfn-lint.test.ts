/**
 * cfn-lint on the synthesized templates (SMT off, and SMT on with every optional resource: fixed
 * egress in two AZs, reserved fetch concurrency): zero errors. Skips are made at the resource, with
 * their reason (lib/operations/dashboard.ts: E3002 on the dashboard's Tags). Warnings are printed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { MeterbridgeStack } from '../../lib/meterbridge-stack.ts';
import { toolsPython } from '../../local/moto.ts';
import { testSettings } from '../fixtures/stage-settings.ts';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'mb-cfn-lint-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Finding {
  Level: string;
  Rule: { Id: string };
  Message: string;
  Location: { Path?: (string | number)[] };
}

/** cfn-lint's JSON findings for a template file; its exit code says only whether there were any. */
async function cfnLint(file: string): Promise<Finding[]> {
  const lint = `import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())`;
  const result = await run(toolsPython(), ['-c', lint, '--format', 'json', '--regions', 'us-east-1', '--', file], {
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string; code?: number }) => {
    if (typeof error.stdout === 'string' && error.stdout.trim().startsWith('[')) return { stdout: error.stdout };
    throw new Error(`cfn-lint did not run (exit ${error.code}): ${error.stderr ?? ''}; run scripts/setup.sh`);
  });
  return JSON.parse(result.stdout) as Finding[];
}

const STAGES: Record<string, Record<string, unknown>> = {
  'SMT off': {},
  'SMT on, fixed egress in 2 AZs, reserved fetch concurrency': {
    enabled: true,
    host: 'sftp.smartmetertexas.biz',
    fixedEgressIp: true,
    egressAvailabilityZones: 2,
    fetchReservedConcurrency: 1,
  },
};

describe('cfn-lint on the synthesized templates', () => {
  for (const [label, smt] of Object.entries(STAGES)) {
    it(`finds no errors with ${label}`, { timeout: 300_000 }, async () => {
      const stack = new MeterbridgeStack(new App(), 'Meterbridge-lint', { settings: testSettings({ alarmEmail: 'ops@example.com', smt }) });
      const file = join(work, `${label.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(Template.fromStack(stack).toJSON()));

      const findings = await cfnLint(file);

      const errors = findings.filter((f) => f.Level === 'Error').map((f) => `${f.Rule.Id} at ${(f.Location.Path ?? []).join('/')}: ${f.Message}`);
      assert.deepEqual(errors, []);
      const warnings = [...new Set(findings.filter((f) => f.Level === 'Warning').map((f) => f.Rule.Id))].sort();
      if (warnings.length > 0) console.log(`cfn-lint warnings (${label}): ${warnings.join(', ')}`);
    });
  }

  it('reports a real error (the check can fail)', { timeout: 120_000 }, async () => {
    const file = join(work, 'broken.json');
    writeFileSync(file, JSON.stringify({ Resources: { Queue: { Type: 'AWS::SQS::Queue', Properties: { VisibilityTimeout: 'a while' } } } }));
    const findings = await cfnLint(file);
    assert.ok(
      findings.some((f) => f.Level === 'Error'),
      JSON.stringify(findings),
    );
  });
});
