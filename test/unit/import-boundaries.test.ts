/**
 * The folders say what ships (docs/design.md §2): the import boundaries of eslint.config.js
 * hold on the tree and refuse what they must, and everything under lambdas/ is reached from a
 * deployed handler.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const eslint = new ESLint({ cwd: root, ruleFilter: ({ ruleId }) => ruleId === 'no-restricted-imports' });

async function restrictedImports(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(root, filePath) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? tsFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

describe('import boundaries', () => {
  it('hold on lambdas/, shared/, gateway/ and the CDK app', async () => {
    const results = await eslint.lintFiles(['lambdas', 'shared', 'gateway', 'lib', 'bin/app.ts']);
    const broken = results.flatMap((r) =>
      r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => `${relative(root, r.filePath)}:${m.line} ${m.message}`),
    );
    assert.ok(results.length > 50, `linted ${results.length} files`);
    assert.deepEqual(broken, []);
  });

  const cases: Array<{ file: string; forbidden: string[]; allowed: string[] }> = [
    {
      file: 'lambdas/core/probe.ts',
      forbidden: [
        '../../local/platform.ts',
        '../../bin/operator/device-provisioning.ts',
        '../../test/support/readings.ts',
        '../../gateway/src/config.ts',
        '../../lib/storage.ts',
        'aws-cdk-lib',
      ],
      allowed: ['./ledger.ts', '../../shared/reading.ts', '@aws-sdk/client-dynamodb'],
    },
    {
      file: 'shared/probe.ts',
      forbidden: ['../lambdas/core/ledger.ts', '../local/platform.ts', '../bin/commands/cli.ts', '../lib/storage.ts', '../gateway/src/config.ts'],
      allowed: ['./reading.ts', 'zod'],
    },
    {
      file: 'gateway/src/probe.ts',
      forbidden: ['../../lambdas/core/ledger.ts', '../../local/platform.ts', '../../bin/commands/cli.ts', '../../lib/storage.ts'],
      allowed: ['./config.ts', '../../shared/telemetry.ts', '../bin/meterbridge-gateway.ts'],
    },
    {
      file: 'lib/probe.ts',
      forbidden: [
        '../lambdas/core/iot-ingest.ts',
        '../lambdas/core/smt/transport/fetch.ts',
        '../shared/log.ts',
        '../local/platform.ts',
        '../bin/operator/device-provisioning.ts',
      ],
      allowed: [
        '../lambdas/core/metric-catalog.ts',
        '../lambdas/core/tables.ts',
        '../lambdas/core/work-units.ts',
        '../shared/telemetry.ts',
        './storage.ts',
        'aws-cdk-lib',
      ],
    },
  ];
  for (const { file, forbidden, allowed } of cases) {
    it(`refuses what ${file.split('/')[0]}/ may not import, and only that`, async () => {
      for (const specifier of forbidden) {
        assert.equal(
          (await restrictedImports(`import { x } from '${specifier}';\nexport const y = x;\n`, file)).length,
          1,
          `${file} importing ${specifier}`,
        );
      }
      for (const specifier of allowed) {
        assert.deepEqual(
          await restrictedImports(`import { x } from '${specifier}';\nexport const y = x;\n`, file),
          [],
          `${file} importing ${specifier}`,
        );
      }
    });
  }

  it('reaches every file under lambdas/ from a deployed handler', () => {
    const entries = readdirSync(join(root, 'lambdas'))
      .filter((name) => name.endsWith('.ts'))
      .map((name) => join('lambdas', name));
    const reached = new Set<string>();
    const visit = (file: string) => {
      if (reached.has(file)) return;
      reached.add(file);
      const source = readFileSync(join(root, file), 'utf8');
      for (const [, specifier] of source.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+\.ts)'/g)) {
        const target = relative(root, resolve(root, dirname(file), specifier!));
        if (target.startsWith('lambdas/')) visit(target);
      }
    };
    entries.forEach(visit);
    const unused = tsFiles('lambdas').filter((file) => !reached.has(file));
    assert.deepEqual(unused, [], 'files under lambdas/ no handler imports belong in local/, bin/operator/ or test/');
  });
});
