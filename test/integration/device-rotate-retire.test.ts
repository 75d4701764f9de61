/**
 * `meterbridge device rotate` and `device retire`: the real CLI as a child process against moto's
 * IoT control plane (certificates registered as `device provision` leaves them: ACTIVE, gateway
 * policy attached, attached to the thing). Outcomes are read back from moto.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { DescribeCertificateCommand, ListAttachedPoliciesCommand, ListThingPrincipalsCommand } from '@aws-sdk/client-iot';
import { motoClientEnvironment } from '../../local/cloudwatch.ts';
import { createDevCa, issueDeviceCert, type DevCa } from '../../local/dev-ca.ts';
import { createLocalIotRegistry, type LocalIotRegistry } from '../../local/iot-registry.ts';
import { startMoto, type Moto } from '../../local/moto.ts';

const repo = resolve(fileURLToPath(import.meta.url), '../../..');
let dir: string;
let moto: Moto;
let ca: DevCa;
let registry: LocalIotRegistry;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mb-device-retire-'));
  moto = await startMoto();
  ca = await createDevCa(dir);
  registry = await createLocalIotRegistry({ moto, ca, dir: join(dir, 'issued'), policyName: 'meterbridge-dev-gateway' });
});
after(async () => {
  registry?.close();
  await moto?.stop();
  await rm(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: process.env.PATH, HOME: dir, ...motoClientEnvironment(moto) };
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'bin/meterbridge.ts', ...args, '--endpoint-url', moto.endpoint],
      { cwd: repo, env, timeout: 60_000 },
      (error, stdout, stderr) => done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A certificate for `thing` as provisioning leaves it. */
async function provisioned(thing: string, name: string): Promise<string> {
  const issued = await issueDeviceCert(ca, join(dir, name), thing);
  return (await registry.registerDevice(thing, issued.certPath)).certificateId;
}

async function statusOf(certificateId: string): Promise<string | undefined> {
  return (await registry.iot.send(new DescribeCertificateCommand({ certificateId }))).certificateDescription?.status;
}

async function attachedTo(thingName: string): Promise<string[]> {
  const { principals = [] } = await registry.iot.send(new ListThingPrincipalsCommand({ thingName }));
  return principals.map((arn) => arn.split('/').at(-1)!).sort();
}

describe('meterbridge device rotate / retire (moto)', () => {
  it('retire revokes one certificate and detaches it from its thing and policy; again is a no-op; the thing keeps its other certificate', async () => {
    const thing = 'gw-retire-01';
    const old = await provisioned(thing, 'old');
    const current = await provisioned(thing, 'current');
    assert.deepEqual(await attachedTo(thing), [old, current].sort());

    const first = await cli(['device', 'retire', old]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      new RegExp(`retired certificate ${old}: ACTIVE -> REVOKED; detached from thing ${thing} and policy meterbridge-dev-gateway`),
    );
    assert.equal(await statusOf(old), 'REVOKED');
    assert.deepEqual(await attachedTo(thing), [current], 'only the current certificate stays attached');
    const { certificateDescription } = await registry.iot.send(new DescribeCertificateCommand({ certificateId: old }));
    const { policies = [] } = await registry.iot.send(new ListAttachedPoliciesCommand({ target: certificateDescription!.certificateArn }));
    assert.deepEqual(policies, [], 'no policy left on the retired certificate');
    assert.equal(await statusOf(current), 'ACTIVE');

    const again = await cli(['device', 'retire', old]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already REVOKED and attached to nothing: nothing to do/);
  });

  it("retire refuses the thing's only ACTIVE certificate without --force, an unknown or malformed id; --force retires it", async () => {
    const thing = 'gw-retire-02';
    const only = await provisioned(thing, 'only');
    const refused = await cli(['device', 'retire', only]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`only ACTIVE certificate of thing ${thing}.*--force`));
    assert.equal(await statusOf(only), 'ACTIVE', 'untouched');
    assert.deepEqual(await attachedTo(thing), [only]);

    const unknown = await cli(['device', 'retire', 'a'.repeat(64)]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /does not exist/);
    const malformed = await cli(['device', 'retire', 'not-an-id']);
    assert.notEqual(malformed.code, 0);
    assert.match(malformed.stderr, /not an IoT certificate id/);

    const forced = await cli(['device', 'retire', only, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await statusOf(only), 'REVOKED');
    assert.deepEqual(await attachedTo(thing), []);
  });

  it("rotate lists the thing's certificates with their status and says how the gateway starts the rotation", async () => {
    const thing = 'gw-rotate-01';
    const old = await provisioned(thing, 'r-old');
    const current = await provisioned(thing, 'r-current');
    await cli(['device', 'retire', old]);
    const shown = await cli(['device', 'rotate', thing]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`${current}  ACTIVE`));
    assert.doesNotMatch(shown.stdout, new RegExp(old), 'a retired certificate is no longer attached, so not listed');
    assert.match(shown.stdout, /meterbridge-gateway rotate --config \/etc\/meterbridge-gateway\/gateway\.yaml/);
    // Fresh certificates are not due (the 90-day interval).
    assert.doesNotMatch(shown.stdout, /DUE for rotation/);

    const missing = await cli(['device', 'rotate', 'gw-never-made']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /thing gw-never-made does not exist/);
  });
});
