/**
 * Synthesizes the app as shipped (bin/app.ts with cdk.json's context, cdk-nag included) into a
 * cloud assembly, and lists every Lambda function in the template with its bundle folder.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CfnTemplate } from './iam.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export interface SynthesizedFunction {
  logicalId: string;
  runtime: string;
  handler: string;
  /** Cloud assembly folder holding the bundle (asset.<hash>); undefined for inline code. */
  bundleDir?: string;
  roleLogicalId: string;
  /** Environment.Variables as in the template (intrinsics unresolved). */
  environment: Record<string, unknown>;
  memoryMb: number;
  timeoutSeconds: number;
  logFormat?: string;
}

export interface Assembly {
  outdir: string;
  template: CfnTemplate;
  functions: SynthesizedFunction[];
}

/** cdk.json's context, with `overrides` on top (what `cdk synth -c key=value` would pass). */
export async function appContext(overrides: Record<string, unknown>): Promise<Record<string, unknown>> {
  const cdkJson = JSON.parse(await readFile(join(REPO, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };
  return { ...cdkJson.context, ...overrides };
}

/** Runs bin/app.ts the way the CDK CLI does (CDK_OUTDIR, CDK_CONTEXT_JSON) and reads the result. */
export async function synthesize(outdir: string, context: Record<string, unknown>): Promise<Assembly> {
  await run(process.execPath, ['--import', 'tsx', 'bin/app.ts'], {
    cwd: REPO,
    env: { ...process.env, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify(context) },
    timeout: 600_000,
    maxBuffer: 32 * 1024 * 1024,
  });
  return readAssembly(outdir);
}

/** Reads a cloud assembly synthesized before (by `synthesize` or `cdk synth`). */
export async function readAssembly(outdir: string): Promise<Assembly> {
  const manifest = JSON.parse(await readFile(join(outdir, 'manifest.json'), 'utf8')) as {
    artifacts: Record<string, { type: string; properties?: { templateFile?: string } }>;
  };
  const stacks = Object.values(manifest.artifacts).filter((a) => a.type === 'aws:cloudformation:stack');
  if (stacks.length !== 1 || !stacks[0]?.properties?.templateFile) throw new Error(`expected one stack in ${outdir}, found ${stacks.length}`);
  const template = JSON.parse(await readFile(join(outdir, stacks[0].properties.templateFile), 'utf8')) as CfnTemplate;
  const functions: SynthesizedFunction[] = [];
  for (const [logicalId, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const p = resource.Properties ?? {};
    const code = p.Code as { S3Key?: unknown; ZipFile?: unknown };
    let bundleDir: string | undefined;
    if (typeof code.S3Key === 'string') {
      bundleDir = join(outdir, `asset.${code.S3Key.replace(/\.zip$/, '')}`);
      if (!existsSync(bundleDir)) throw new Error(`${logicalId}: bundle folder ${bundleDir} is not in the cloud assembly`);
    }
    const role = (p.Role as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
    if (!role) throw new Error(`${logicalId}: Role is not a Fn::GetAtt of a role in the template`);
    functions.push({
      logicalId,
      runtime: String(p.Runtime),
      handler: String(p.Handler),
      bundleDir,
      roleLogicalId: role[0],
      environment: (p.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {},
      memoryMb: Number(p.MemorySize ?? 128),
      timeoutSeconds: Number(p.Timeout ?? 3),
      logFormat: (p.LoggingConfig as { LogFormat?: string } | undefined)?.LogFormat,
    });
  }
  return { outdir, template, functions };
}
