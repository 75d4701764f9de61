/**
 * The real CLI (`node --import tsx bin/meterbridge.ts ...`) as a child process, against a
 * loopback HTTP endpoint that answers the IoT control plane's REST-JSON API. IoT has no local
 * stand-in; this endpoint keeps just enough state (things, certificates, attachments) for
 * provision and revoke to run end to end through the real SDK client, and records every request
 * so the order and content on the wire can be asserted.
 *
 * Routes (from the SDK's schemas in @aws-sdk/client-iot):
 *   GET    /endpoint?endpointType=            DescribeEndpoint
 *   POST   /things/{thingName}                CreateThing
 *   GET    /things/{thingName}/principals     ListThingPrincipals
 *   PUT    /things/{thingName}/principals     AttachThingPrincipal (x-amzn-principal header)
 *   DELETE /things/{thingName}/principals     DetachThingPrincipal (x-amzn-principal header)
 *   DELETE /things/{thingName}                DeleteThing
 *   POST   /certificates?setAsActive=true     CreateCertificateFromCsr
 *   PUT    /certificates/{id}?newStatus=      UpdateCertificate
 *   DELETE /certificates/{id}                 DeleteCertificate
 *   PUT    /target-policies/{policyName}      AttachPolicy ({ target })
 *   POST   /target-policies/{policyName}      DetachPolicy ({ target })
 *   POST   /attached-policies/{target}        ListAttachedPolicies
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(fileURLToPath(import.meta.url), '../../..');
const ACCOUNT_ARN = 'arn:aws:iot:eu-west-1:123456789012';
const ENDPOINT = 'stub123-ats.iot.eu-west-1.amazonaws.com';

interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  principalHeader?: string;
  body: Record<string, unknown>;
}

interface Stub {
  url: string;
  requests: Recorded[];
  /** Operation name (e.g. 'AttachThingPrincipal') that answers with an error. */
  failOn?: string;
  things: Map<string, { thingTypeName?: string; principals: Set<string> }>;
  certificates: Map<string, { status: string; policies: Set<string> }>;
  close(): Promise<void>;
}

let work: string;
let ca: { cert: string; key: string };
let stub: Stub;
let counter = 0;

function signCsr(csrPem: string): string {
  const csrFile = join(work, `req-${++counter}.csr`);
  writeFileSync(csrFile, csrPem);
  return execFileSync(
    'openssl',
    ['x509', '-req', '-in', csrFile, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-subj', '/CN=AWS IoT Certificate'],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

function reply(response: ServerResponse, status: number, body: unknown, errorType?: string): void {
  response.writeHead(status, { 'content-type': 'application/json', ...(errorType ? { 'x-amzn-errortype': errorType } : {}) });
  response.end(JSON.stringify(body));
}

async function startIotStub(): Promise<Stub> {
  const stubState = {
    requests: [] as Recorded[],
    failOn: undefined as string | undefined,
    things: new Map<string, { thingTypeName?: string; principals: Set<string> }>(),
    certificates: new Map<string, { status: string; policies: Set<string> }>(),
  };
  const server: Server = createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://stub');
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const body = await readJson(request);
    const principalHeader = request.headers['x-amzn-principal'] as string | undefined;
    const method = request.method ?? '';
    // Recorded decoded (the SDK percent-encodes labels such as a certificate ARN).
    stubState.requests.push({ method, path: `/${segments.join('/')}`, query: Object.fromEntries(url.searchParams), principalHeader, body });

    const route = `${method} /${segments[0] ?? ''}${segments.length > 2 ? `/:/${segments[2]}` : segments.length > 1 ? '/:' : ''}`;
    const operation: Record<string, string> = {
      'GET /endpoint': 'DescribeEndpoint',
      'POST /things/:': 'CreateThing',
      'DELETE /things/:': 'DeleteThing',
      'GET /things/:/principals': 'ListThingPrincipals',
      'PUT /things/:/principals': 'AttachThingPrincipal',
      'DELETE /things/:/principals': 'DetachThingPrincipal',
      'POST /certificates': 'CreateCertificateFromCsr',
      'PUT /certificates/:': 'UpdateCertificate',
      'DELETE /certificates/:': 'DeleteCertificate',
      'PUT /target-policies/:': 'AttachPolicy',
      'POST /target-policies/:': 'DetachPolicy',
      'POST /attached-policies/:': 'ListAttachedPolicies',
    };
    const name = operation[route];
    if (!name) return reply(response, 404, { message: `stub: no route for ${route}` }, 'ResourceNotFoundException');
    if (stubState.failOn === name) return reply(response, 400, { message: `injected ${name} failure` }, 'InvalidRequestException');

    const thingName = segments[1] ?? '';
    const certArn = (id: string) => `${ACCOUNT_ARN}:cert/${id}`;
    switch (name) {
      case 'DescribeEndpoint':
        return reply(response, 200, { endpointAddress: ENDPOINT });
      case 'CreateThing':
        stubState.things.set(thingName, { thingTypeName: body.thingTypeName as string | undefined, principals: new Set() });
        return reply(response, 200, { thingName, thingArn: `${ACCOUNT_ARN}:thing/${thingName}`, thingId: 'id' });
      case 'DeleteThing':
        stubState.things.delete(thingName);
        return reply(response, 200, {});
      case 'ListThingPrincipals': {
        const thing = stubState.things.get(thingName);
        if (!thing) return reply(response, 404, { message: `thing ${thingName} not found` }, 'ResourceNotFoundException');
        return reply(response, 200, { principals: [...thing.principals] });
      }
      case 'AttachThingPrincipal':
        stubState.things.get(thingName)?.principals.add(principalHeader ?? '');
        return reply(response, 200, {});
      case 'DetachThingPrincipal':
        stubState.things.get(thingName)?.principals.delete(principalHeader ?? '');
        return reply(response, 200, {});
      case 'CreateCertificateFromCsr': {
        const certificatePem = signCsr(String(body.certificateSigningRequest));
        const certificateId = new X509Certificate(certificatePem).fingerprint256.replaceAll(':', '').toLowerCase();
        stubState.certificates.set(certificateId, {
          status: url.searchParams.get('setAsActive') === 'true' ? 'ACTIVE' : 'INACTIVE',
          policies: new Set(),
        });
        return reply(response, 200, { certificateArn: certArn(certificateId), certificateId, certificatePem });
      }
      case 'UpdateCertificate': {
        const certificate = stubState.certificates.get(thingName);
        if (certificate) certificate.status = url.searchParams.get('newStatus') ?? '?';
        return reply(response, 200, {});
      }
      case 'DeleteCertificate':
        stubState.certificates.delete(thingName);
        return reply(response, 200, {});
      case 'AttachPolicy':
      case 'DetachPolicy': {
        const id = String(body.target).split('/').pop() ?? '';
        const policies = stubState.certificates.get(id)?.policies;
        if (name === 'AttachPolicy') policies?.add(thingName);
        else policies?.delete(thingName);
        return reply(response, 200, {});
      }
      case 'ListAttachedPolicies': {
        const id = thingName.split('/').pop() ?? '';
        const policies = [...(stubState.certificates.get(id)?.policies ?? [])];
        return reply(response, 200, { policies: policies.map((policyName) => ({ policyName, policyArn: `${ACCOUNT_ARN}:policy/${policyName}` })) });
      }
    }
    return reply(response, 500, { message: 'unreachable' });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return Object.assign(stubState, {
    url,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  }) as Stub;
}

/** Runs the CLI as the operator would, with dummy credentials (asynchronously: the stub lives in this process). */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: work,
    AWS_ACCESS_KEY_ID: 'AKIDLOCALTEST',
    AWS_SECRET_ACCESS_KEY: 'local-secret',
    AWS_REGION: 'eu-west-1',
    // Keep the SDK away from any real config on this machine.
    AWS_CONFIG_FILE: join(work, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-aws-credentials'),
  };
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', 'bin/meterbridge.ts', ...args], { cwd: repo, env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** The gateway agent's CLI from the repository (keygen runs on the device). */
function gatewayCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'gateway/bin/meterbridge-gateway.ts', ...args],
      { cwd: repo, env: { PATH: process.env.PATH, HOME: work }, timeout: 60_000 },
      (error, stdout, stderr) => {
        done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

function operations(): string[] {
  return stub.requests.map((r) => `${r.method} ${r.path}`);
}

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'mb-device-cli-'));
  ca = { cert: join(work, 'ca.pem'), key: join(work, 'ca.key') };
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      ca.key,
      '-out',
      ca.cert,
      '-subj',
      '/CN=stub IoT CA',
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
  stub = await startIotStub();
});
after(async () => {
  await stub?.close();
  rmSync(work, { recursive: true, force: true });
});
beforeEach(() => {
  stub.requests.length = 0;
  stub.failOn = undefined;
});

describe('meterbridge CLI', () => {
  it('--help lists the commands; device --help lists the subcommands and defaults', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: meterbridge <command>/);
    assert.match(top.stdout, /device\s+provision and revoke gateway certificates/);
    const device = await cli(['device', '--help']);
    assert.equal(device.code, 0);
    assert.match(device.stdout, /meterbridge device provision <thingName> --out <dir>/);
    assert.match(device.stdout, /meterbridge device revoke <thingName> \[--delete-thing\]/);
    assert.match(device.stdout, /default meterbridge_<stage>_telemetry/);
  });

  it('exits 2 with a clear message on an unknown command, subcommand or option, or a bad thing name', async () => {
    const unknown = await cli(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate" \(commands: device, local, meters, readings, ready, smt\)/);
    assert.equal(unknown.stdout, '');

    const sub = await cli(['device', 'renew', 'gw-1']);
    assert.equal(sub.code, 2);
    assert.match(sub.stderr, /unknown device subcommand "renew"/);

    const option = await cli(['device', 'provision', 'gw-1', '--out', join(work, 'x'), '--colour', 'red']);
    assert.equal(option.code, 2);
    assert.match(option.stderr, /Unknown option '--colour'/);
    assert.match(option.stderr, /Run 'meterbridge device --help' for usage/);

    const noOut = await cli(['device', 'provision', 'gw-1']);
    assert.equal(noOut.code, 2);
    assert.match(noOut.stderr, /provision needs --out <dir>/);

    const badName = await cli(['device', 'revoke', 'gw/1']);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /"gw\/1" is not a valid thing name/);
    assert.equal(stub.requests.length, 0, 'nothing reached AWS');
  });

  it('device provision: the calls in order on the wire, with stage defaults, and the files with their modes', async () => {
    const outDir = join(work, 'gw-0042');
    const result = await cli(['device', 'provision', 'gw-0042', '--out', outDir, '--stage', 'prod', '--endpoint-url', stub.url]);
    assert.equal(result.code, 0, result.stderr);

    assert.deepEqual(operations(), [
      'GET /endpoint',
      'POST /things/gw-0042',
      'POST /certificates',
      'PUT /target-policies/meterbridge-prod-gateway',
      'PUT /things/gw-0042/principals',
    ]);
    const [describe, createThing, createCert, attachPolicy, attachPrincipal] = stub.requests;
    assert.deepEqual(describe!.query, { endpointType: 'iot:Data-ATS' });
    assert.deepEqual(createThing!.body, { thingTypeName: 'meterbridge-prod-gateway' });
    assert.deepEqual(createCert!.query, { setAsActive: 'true' });
    assert.match(String(createCert!.body.certificateSigningRequest), /^-----BEGIN CERTIFICATE REQUEST-----/);
    const certificateId = [...stub.certificates.keys()][0]!;
    const certificateArn = `${ACCOUNT_ARN}:cert/${certificateId}`;
    assert.deepEqual(attachPolicy!.body, { target: certificateArn });
    assert.equal(attachPrincipal!.principalHeader, certificateArn);
    for (const request of stub.requests) assert.ok(!JSON.stringify(request).includes('PRIVATE KEY'), 'no request carries the key');

    assert.equal(mode(outDir), 0o700);
    assert.equal(mode(join(outDir, 'device.key.pem')), 0o600);
    for (const file of ['device.cert.pem', 'AmazonRootCA1.pem', 'endpoint.json']) assert.equal(mode(join(outDir, file)), 0o644, file);
    assert.ok(!existsSync(join(outDir, 'device.key.pem.partial')));
    const key = createPrivateKey(readFileSync(join(outDir, 'device.key.pem')));
    assert.ok(new X509Certificate(readFileSync(join(outDir, 'device.cert.pem'))).checkPrivateKey(key));
    assert.deepEqual(JSON.parse(readFileSync(join(outDir, 'endpoint.json'), 'utf8')), {
      endpoint: ENDPOINT,
      port: 8883,
      thingName: 'gw-0042',
      topic: '$aws/rules/meterbridge_prod_telemetry/gateways/gw-0042/telemetry',
    });
    assert.match(result.stdout, new RegExp(`provisioned gw-0042\\n  certificate  ${certificateId} \\(ACTIVE\\)`));

    // A second run into the same directory is refused without touching AWS.
    stub.requests.length = 0;
    const again = await cli(['device', 'provision', 'gw-0042', '--out', outDir, '--endpoint-url', stub.url]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to overwrite .*device\.key\.pem/);
    assert.equal(stub.requests.length, 0);

    // Then revoke it, deleting the thing: revoked first, then detached.
    const revoked = await cli(['device', 'revoke', 'gw-0042', '--delete-thing', '--endpoint-url', stub.url]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.deepEqual(operations(), [
      'GET /things/gw-0042/principals',
      `PUT /certificates/${certificateId}`,
      'DELETE /things/gw-0042/principals',
      `POST /attached-policies/${certificateArn}`,
      'POST /target-policies/meterbridge-prod-gateway',
      'DELETE /things/gw-0042',
    ]);
    assert.deepEqual(stub.requests[1]!.query, { newStatus: 'REVOKED' });
    assert.equal(stub.certificates.get(certificateId)?.status, 'REVOKED');
    assert.match(
      revoked.stdout,
      new RegExp(`revoked certificate ${certificateId}; detached from gw-0042 and from policy meterbridge-prod-gateway\\ndeleted thing gw-0042`),
    );

    // And again: idempotent.
    const twice = await cli(['device', 'revoke', 'gw-0042', '--endpoint-url', stub.url]);
    assert.equal(twice.code, 0, twice.stderr);
    assert.match(twice.stdout, /thing gw-0042 does not exist: nothing to revoke/);
  });

  it('device provision: an AttachThingPrincipal failure is rolled back over the wire and exits 1', async () => {
    stub.failOn = 'AttachThingPrincipal';
    const outDir = join(work, 'gw-0043');
    const result = await cli([
      'device',
      'provision',
      'gw-0043',
      '--out',
      outDir,
      '--policy',
      'p-test',
      '--thing-type',
      'tt-test',
      '--rule',
      'r_test',
      '--endpoint-url',
      stub.url,
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /provisioning gw-0043 failed at AttachThingPrincipal: InvalidRequestException: injected AttachThingPrincipal failure\. Rolled back: certificate [0-9a-f]{64} was deactivated, detached and deleted/,
    );

    const certificateId = String(
      stub.requests
        .find((r) => r.method === 'PUT' && r.path.startsWith('/certificates/'))
        ?.path.split('/')
        .pop(),
    );
    assert.deepEqual(operations(), [
      'GET /endpoint',
      'POST /things/gw-0043',
      'POST /certificates',
      'PUT /target-policies/p-test',
      'PUT /things/gw-0043/principals',
      `PUT /certificates/${certificateId}`,
      'DELETE /things/gw-0043/principals',
      'POST /target-policies/p-test',
      `DELETE /certificates/${certificateId}`,
    ]);
    assert.deepEqual(stub.requests[5]!.query, { newStatus: 'INACTIVE' });
    assert.ok(!stub.certificates.has(certificateId), 'no certificate left behind');
    assert.ok(
      !existsSync(join(outDir, 'device.key.pem')) &&
        !existsSync(join(outDir, 'device.key.pem.partial')) &&
        !existsSync(join(outDir, 'device.cert.pem')),
    );
  });
  it('keys born on the device: meterbridge-gateway keygen makes key (0600) + CSR; device provision --csr signs it and writes only the certificate', async () => {
    const gatewayDir = join(work, 'gateway-etc');
    const operatorDir = join(work, 'operator-gw-0077');
    const keygen = await gatewayCli(['keygen', '--thing', 'gw-0077', '--out', gatewayDir]);
    assert.equal(keygen.code, 0, keygen.stderr);
    assert.equal(mode(join(gatewayDir, 'device.key.pem')), 0o600);
    const csrPem = readFileSync(join(gatewayDir, 'device.csr.pem'), 'utf8');
    assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    assert.match(
      execFileSync('openssl', ['req', '-in', join(gatewayDir, 'device.csr.pem'), '-noout', '-verify', '-subject'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
      /subject=CN\s*=\s*gw-0077/,
    );
    // A second keygen never replaces the key (its certificate would be orphaned).
    const again = await gatewayCli(['keygen', '--thing', 'gw-0077', '--out', gatewayDir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to replace .*device\.key\.pem/);

    const result = await cli([
      'device',
      'provision',
      'gw-0077',
      '--csr',
      join(gatewayDir, 'device.csr.pem'),
      '--out',
      operatorDir,
      '--endpoint-url',
      stub.url,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(operations(), [
      'GET /endpoint',
      'POST /things/gw-0077',
      'POST /certificates',
      'PUT /target-policies/meterbridge-dev-gateway',
      'PUT /things/gw-0077/principals',
    ]);
    assert.equal(stub.requests[2]!.body.certificateSigningRequest, csrPem, "IoT Core signs the device's own request");
    assert.deepEqual(
      readdirSync(operatorDir).sort(),
      ['AmazonRootCA1.pem', 'device.cert.pem', 'endpoint.json'],
      'no key made or written on the operator side',
    );
    assert.match(result.stdout, /device\.cert\.pem \(the key stays on the gateway\)/);
    const certificate = new X509Certificate(readFileSync(join(operatorDir, 'device.cert.pem')));
    assert.ok(
      certificate.checkPrivateKey(createPrivateKey(readFileSync(join(gatewayDir, 'device.key.pem')))),
      'the certificate is for the key on the gateway',
    );

    // A CSR for another thing, or one whose signature does not hold, is refused before any AWS call.
    stub.requests.length = 0;
    const wrongThing = await cli([
      'device',
      'provision',
      'gw-0078',
      '--csr',
      join(gatewayDir, 'device.csr.pem'),
      '--out',
      join(work, 'operator-gw-0078'),
      '--endpoint-url',
      stub.url,
    ]);
    assert.equal(wrongThing.code, 1);
    assert.match(wrongThing.stderr, /the CSR is for "gw-0077", not gw-0078/);
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[40]! ^= 0x01; // inside the signed subject/public key
    const tampered = join(work, 'tampered.csr.pem');
    writeFileSync(tampered, `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`);
    const refused = await cli([
      'device',
      'provision',
      'gw-0077',
      '--csr',
      tampered,
      '--out',
      join(work, 'operator-tampered'),
      '--endpoint-url',
      stub.url,
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /CSR (signature does not verify|is not usable)/);
    assert.equal(stub.requests.length, 0);
  });
});
