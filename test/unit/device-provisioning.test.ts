import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import {
  AttachPolicyCommand,
  AttachThingPrincipalCommand,
  CreateCertificateFromCsrCommand,
  CreateThingCommand,
  DeleteCertificateCommand,
  DeleteThingCommand,
  DescribeEndpointCommand,
  DescribeThingCommand,
  DetachPolicyCommand,
  DetachThingPrincipalCommand,
  InvalidRequestException,
  IoTClient,
  ListAttachedPoliciesCommand,
  ListThingPrincipalsCommand,
  ResourceAlreadyExistsException,
  ResourceNotFoundException,
  UpdateCertificateCommand,
  DeleteConflictException,
} from '@aws-sdk/client-iot';
import {
  AMAZON_ROOT_CA_1_PEM,
  DEVICE_FILES,
  DeviceProvisioningError,
  der,
  provisionDevice,
  revokeDevice,
  type ProvisionDeviceOptions,
} from '../../bin/operator/device-provisioning.ts';

const iotMock = mockClient(IoTClient);
const iot = new IoTClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });

const ENDPOINT = 'a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com';
const ACCOUNT_ARN = 'arn:aws:iot:us-east-1:123456789012';

let work: string;
let ca: { cert: string; key: string };
let dirCount = 0;

/** A throwaway CA that signs CSRs the way IoT Core does (its certificate says nothing of the CSR's subject). */
function signCsr(csrPem: string): { certificatePem: string; certificateId: string; certificateArn: string } {
  const csrFile = join(work, `req-${++dirCount}.csr`);
  writeFileSync(csrFile, csrPem);
  const certificatePem = execFileSync(
    'openssl',
    ['x509', '-req', '-in', csrFile, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-subj', '/CN=AWS IoT Certificate'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const certificateId = new X509Certificate(certificatePem).fingerprint256.replaceAll(':', '').toLowerCase();
  return { certificatePem, certificateId, certificateArn: `${ACCOUNT_ARN}:cert/${certificateId}` };
}

/** The mock answers of a healthy account. */
function healthyIot(): void {
  iotMock.on(DescribeEndpointCommand).resolves({ endpointAddress: ENDPOINT });
  iotMock.on(CreateThingCommand).callsFake((input: { thingName: string }) => ({
    thingName: input.thingName,
    thingArn: `${ACCOUNT_ARN}:thing/${input.thingName}`,
    thingId: 'thing-id',
  }));
  iotMock.on(CreateCertificateFromCsrCommand).callsFake((input: { certificateSigningRequest: string }) => signCsr(input.certificateSigningRequest));
  iotMock.on(AttachPolicyCommand).resolves({});
  iotMock.on(AttachThingPrincipalCommand).resolves({});
  iotMock.on(UpdateCertificateCommand).resolves({});
  iotMock.on(DetachThingPrincipalCommand).resolves({});
  iotMock.on(DetachPolicyCommand).resolves({});
  iotMock.on(DeleteCertificateCommand).resolves({});
}

/** Command names and inputs of every call sent, in order. */
function calls(): Array<{ name: string; input: Record<string, unknown> }> {
  return iotMock.calls().map((call) => {
    const command = call.args[0] as unknown as { constructor: { name: string }; input: Record<string, unknown> };
    return { name: command.constructor.name.replace(/Command$/, ''), input: command.input };
  });
}

function freshDir(): string {
  return join(work, `device-${++dirCount}`, 'out');
}

function options(outDir: string, extra: Partial<ProvisionDeviceOptions> = {}): ProvisionDeviceOptions {
  return {
    iot,
    thingName: 'gw-0001',
    policyName: 'meterbridge-dev-gateway',
    thingTypeName: 'meterbridge-dev-gateway',
    ruleName: 'meterbridge_dev_telemetry',
    outDir,
    retryDelaysMs: [0, 0],
    ...extra,
  };
}

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'mb-provision-'));
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
      '/CN=test IoT CA',
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
});
after(() => rmSync(work, { recursive: true, force: true }));
beforeEach(() => {
  iotMock.reset();
  healthyIot();
});

describe('provisionDevice', () => {
  it('calls DescribeEndpoint, CreateThing, CreateCertificateFromCsr, AttachPolicy, AttachThingPrincipal in that order, with the right inputs', async () => {
    const outDir = freshDir();
    const device = await provisionDevice(options(outDir));

    const sent = calls();
    assert.deepEqual(
      sent.map((c) => c.name),
      ['DescribeEndpoint', 'CreateThing', 'CreateCertificateFromCsr', 'AttachPolicy', 'AttachThingPrincipal'],
    );
    const [describe, createThing, createCert, attachPolicy, attachPrincipal] = sent;
    assert.deepEqual(describe!.input, { endpointType: 'iot:Data-ATS' });
    assert.deepEqual(createThing!.input, { thingName: 'gw-0001', thingTypeName: 'meterbridge-dev-gateway' });
    assert.equal(createCert!.input.setAsActive, true);
    const certificateArn = device.certificateArn;
    assert.match(certificateArn, /:cert\/[0-9a-f]{64}$/);
    assert.deepEqual(attachPolicy!.input, { policyName: 'meterbridge-dev-gateway', target: certificateArn });
    assert.deepEqual(attachPrincipal!.input, { thingName: 'gw-0001', principal: certificateArn });

    assert.equal(device.endpoint, ENDPOINT);
    assert.equal(device.topic, '$aws/rules/meterbridge_dev_telemetry/gateways/gw-0001/telemetry');
    assert.equal(device.thingExisted, false);
  });

  it('sends a CSR that openssl verifies, with CN = thing name and the public key of the written key', async () => {
    const outDir = freshDir();
    await provisionDevice(options(outDir, { thingName: 'site_7:gw-0002' }));

    const csrPem = String(calls().find((c) => c.name === 'CreateCertificateFromCsr')!.input.certificateSigningRequest);
    assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const csrFile = join(outDir, '..', 'sent.csr');
    writeFileSync(csrFile, csrPem);
    const text = execFileSync('openssl', ['req', '-in', csrFile, '-verify', '-noout', '-text'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    assert.match(text, /Subject: CN = site_7:gw-0002\n/);
    assert.match(text, /ASN1 OID: prime256v1/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    // openssl reports the self-signature check on stderr; a bad signature makes it exit non-zero (execFileSync throws).
    const verify = execFileSync('sh', ['-c', `openssl req -in '${csrFile}' -verify -noout 2>&1`], { encoding: 'utf8' });
    assert.match(verify, /verify OK/);

    const csrPublicKey = execFileSync('openssl', ['req', '-in', csrFile, '-noout', '-pubkey'], { encoding: 'utf8' });
    const keyPem = readFileSync(join(outDir, DEVICE_FILES.key), 'utf8');
    assert.equal(
      createPublicKey(csrPublicKey).export({ type: 'spki', format: 'pem' }),
      createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }),
    );
  });

  it('never sends the private key: no call input contains it', async () => {
    const outDir = freshDir();
    await provisionDevice(options(outDir));
    const keyPem = readFileSync(join(outDir, DEVICE_FILES.key), 'utf8');
    const keyBody = keyPem
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('');
    const keyDer = createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
    for (const call of calls()) {
      const text = JSON.stringify(call.input);
      assert.ok(!text.includes('PRIVATE KEY'), `${call.name} input mentions a private key`);
      assert.ok(!text.includes(keyBody.slice(0, 40)), `${call.name} input contains the key`);
      assert.ok(!text.includes(keyDer.toString('base64').slice(-40)), `${call.name} input contains the key`);
    }
  });

  it('writes key 0600, certificate/root CA/endpoint.json 0644 into a new 0700 directory, and nothing else', async () => {
    const outDir = freshDir();
    const device = await provisionDevice(options(outDir));

    assert.equal(mode(outDir), 0o700);
    assert.equal(mode(join(outDir, 'device.key.pem')), 0o600);
    assert.equal(mode(join(outDir, 'device.cert.pem')), 0o644);
    assert.equal(mode(join(outDir, 'AmazonRootCA1.pem')), 0o644);
    assert.equal(mode(join(outDir, 'endpoint.json')), 0o644);
    assert.ok(!existsSync(join(outDir, DEVICE_FILES.pendingKey)), 'the pending key name is gone');

    const keyPem = readFileSync(device.files.key, 'utf8');
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(keyPem);
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(new X509Certificate(readFileSync(device.files.certificate)).checkPrivateKey(key), 'the certificate is for the written key');
    assert.deepEqual(JSON.parse(readFileSync(device.files.endpoint, 'utf8')), {
      endpoint: ENDPOINT,
      port: 8883,
      thingName: 'gw-0001',
      topic: '$aws/rules/meterbridge_dev_telemetry/gateways/gw-0001/telemetry',
    });
    assert.equal(readFileSync(device.files.rootCa, 'utf8'), AMAZON_ROOT_CA_1_PEM);
  });

  it('embeds the genuine Amazon Root CA 1 (subject, SHA-256 fingerprint, and Node’s own root store agree)', () => {
    const root = new X509Certificate(AMAZON_ROOT_CA_1_PEM);
    assert.equal(root.subject, 'C=US\nO=Amazon\nCN=Amazon Root CA 1');
    assert.equal(root.fingerprint256, '8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E');
    const inNode = rootCertificates.map((pem) => new X509Certificate(pem)).find((c) => c.fingerprint256 === root.fingerprint256);
    assert.ok(inNode, 'the same certificate is in Node’s bundled root store');
    assert.ok(root.raw.equals(inNode.raw));
  });

  it('refuses to overwrite an existing device.key.pem, before any AWS call', async () => {
    const outDir = freshDir();
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'device.key.pem'), 'the old key');

    await assert.rejects(provisionDevice(options(outDir)), (error: Error) => {
      assert.ok(error instanceof DeviceProvisioningError);
      assert.match(error.message, /refusing to overwrite .*device\.key\.pem/);
      return true;
    });
    assert.equal(iotMock.calls().length, 0);
    assert.equal(readFileSync(join(outDir, 'device.key.pem'), 'utf8'), 'the old key');
  });

  it('refuses to go on from an interrupted run, naming the certificate it may have left active', async () => {
    const outDir = freshDir();
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, DEVICE_FILES.pendingKey), 'key of an interrupted run');
    const leftover = signCsr(execFileSync('openssl', ['req', '-new', '-key', ca.key, '-subj', '/CN=x'], { encoding: 'utf8' }));
    writeFileSync(join(outDir, DEVICE_FILES.certificate), leftover.certificatePem);

    await assert.rejects(
      provisionDevice(options(outDir)),
      new RegExp(`interrupted provisioning run.*${leftover.certificateId}.*may be registered and ACTIVE`),
    );
    assert.equal(iotMock.calls().length, 0);
  });

  it('rejects invalid thing names before doing anything', async () => {
    for (const thingName of ['', 'a'.repeat(129), 'gw/1', 'gw 1', 'gw#1', 'gw+1', 'gwé']) {
      const outDir = freshDir();
      await assert.rejects(provisionDevice(options(outDir, { thingName })), /is not a valid thing name/, thingName);
      assert.ok(!existsSync(outDir), 'no directory created');
    }
    assert.equal(iotMock.calls().length, 0);
    // The limits themselves are accepted.
    await provisionDevice(options(freshDir(), { thingName: 'a'.repeat(128) }));
    await provisionDevice(options(freshDir(), { thingName: 'A:b_c-9' }));
  });

  it('rolls back on an AttachThingPrincipal failure: deactivated, detached, deleted, files removed, clear error', async () => {
    iotMock.on(AttachThingPrincipalCommand).rejects(new InvalidRequestException({ message: 'injected failure', $metadata: {} }));
    const outDir = freshDir();

    let certificateId = '';
    await assert.rejects(provisionDevice(options(outDir)), (error: Error) => {
      assert.ok(error instanceof DeviceProvisioningError);
      certificateId = error.certificateId ?? '';
      assert.equal(error.step, 'AttachThingPrincipal');
      assert.match(error.message, /^provisioning gw-0001 failed at AttachThingPrincipal: InvalidRequestException: injected failure\. /);
      assert.match(error.message, new RegExp(`Rolled back: certificate ${certificateId} was deactivated, detached and deleted`));
      assert.equal(error.rollback?.certificateDeleted, true);
      return true;
    });

    const sent = calls();
    assert.deepEqual(
      sent.map((c) => c.name),
      [
        'DescribeEndpoint',
        'CreateThing',
        'CreateCertificateFromCsr',
        'AttachPolicy',
        'AttachThingPrincipal',
        'UpdateCertificate',
        'DetachThingPrincipal',
        'DetachPolicy',
        'DeleteCertificate',
      ],
    );
    const arn = `${ACCOUNT_ARN}:cert/${certificateId}`;
    assert.deepEqual(sent[5]!.input, { certificateId, newStatus: 'INACTIVE' });
    assert.deepEqual(sent[6]!.input, { thingName: 'gw-0001', principal: arn });
    assert.deepEqual(sent[7]!.input, { policyName: 'meterbridge-dev-gateway', target: arn });
    assert.deepEqual(sent[8]!.input, { certificateId });
    for (const file of Object.values(DEVICE_FILES)) assert.ok(!existsSync(join(outDir, file)), `${file} removed`);
  });

  it('retries DeleteCertificate while the detach propagates', async () => {
    iotMock.on(AttachThingPrincipalCommand).rejects(new InvalidRequestException({ message: 'injected', $metadata: {} }));
    iotMock
      .on(DeleteCertificateCommand)
      .rejectsOnce(new DeleteConflictException({ message: 'still attached', $metadata: {} }))
      .resolves({});
    await assert.rejects(provisionDevice(options(freshDir())), /Rolled back/);
    assert.equal(calls().filter((c) => c.name === 'DeleteCertificate').length, 2);
  });

  it('says ROLLBACK INCOMPLETE, and keeps the key, when the certificate cannot be deleted', async () => {
    iotMock.on(AttachPolicyCommand).rejects(new ResourceNotFoundException({ message: 'no such policy', $metadata: {} }));
    iotMock.on(DeleteCertificateCommand).rejects(new Error('network down'));
    const outDir = freshDir();

    await assert.rejects(provisionDevice(options(outDir)), (error: Error) => {
      assert.ok(error instanceof DeviceProvisioningError);
      assert.match(error.message, /failed at AttachPolicy: ResourceNotFoundException: no such policy/);
      assert.match(
        error.message,
        new RegExp(`ROLLBACK INCOMPLETE: certificate ${error.certificateId} is INACTIVE and was not deleted \\(DeleteCertificate: network down\\)`),
      );
      assert.match(error.message, /aws iot delete-certificate/);
      return true;
    });
    // AttachThingPrincipal was never attempted, so it is not undone; the policy attach is.
    assert.deepEqual(
      calls()
        .map((c) => c.name)
        .slice(3),
      ['AttachPolicy', 'UpdateCertificate', 'DetachPolicy', 'DeleteCertificate'],
    );
    assert.ok(existsSync(join(outDir, DEVICE_FILES.pendingKey)), 'key kept for the manual clean-up');
    assert.ok(!existsSync(join(outDir, DEVICE_FILES.key)), 'but not published as a finished device');
  });

  it('removes the key when a step before the certificate fails, and creates no certificate', async () => {
    iotMock.on(CreateThingCommand).rejects(new ResourceNotFoundException({ message: 'thing type meterbridge-dev-gateway not found', $metadata: {} }));
    const outDir = freshDir();
    await assert.rejects(provisionDevice(options(outDir)), /failed at CreateThing: ResourceNotFoundException: thing type/);
    assert.deepEqual(
      calls().map((c) => c.name),
      ['DescribeEndpoint', 'CreateThing'],
    );
    assert.ok(!existsSync(join(outDir, DEVICE_FILES.pendingKey)));
  });

  it('accepts an existing thing of the same type (CreateThing said ResourceAlreadyExists)', async () => {
    iotMock.on(CreateThingCommand).rejects(new ResourceAlreadyExistsException({ message: 'exists with other attributes', $metadata: {} }));
    iotMock
      .on(DescribeThingCommand)
      .resolves({ thingName: 'gw-0001', thingArn: `${ACCOUNT_ARN}:thing/gw-0001`, thingTypeName: 'meterbridge-dev-gateway' });
    const device = await provisionDevice(options(freshDir()));
    assert.equal(device.thingExisted, true);
    assert.deepEqual(
      calls()
        .map((c) => c.name)
        .slice(0, 4),
      ['DescribeEndpoint', 'CreateThing', 'DescribeThing', 'CreateCertificateFromCsr'],
    );
  });

  it('refuses an existing thing of another type, before creating a certificate', async () => {
    iotMock.on(CreateThingCommand).rejects(new ResourceAlreadyExistsException({ message: 'exists', $metadata: {} }));
    iotMock.on(DescribeThingCommand).resolves({ thingName: 'gw-0001', thingTypeName: 'someone-elses-type' });
    const outDir = freshDir();
    await assert.rejects(
      provisionDevice(options(outDir)),
      /thing gw-0001 already exists with thing type someone-elses-type, not meterbridge-dev-gateway; refusing/,
    );
    assert.ok(!calls().some((c) => c.name === 'CreateCertificateFromCsr'));
    assert.ok(!existsSync(join(outDir, DEVICE_FILES.pendingKey)));
  });
});

describe('revokeDevice', () => {
  const certA = 'a'.repeat(64);
  const certB = 'b'.repeat(64);
  const arnA = `${ACCOUNT_ARN}:cert/${certA}`;
  const arnB = `${ACCOUNT_ARN}:cert/${certB}`;

  it('revokes each certificate first, then detaches it from the thing and its policies; pages through both lists', async () => {
    iotMock
      .on(ListThingPrincipalsCommand)
      .resolvesOnce({ principals: [arnA], nextToken: 'page2' })
      .resolvesOnce({ principals: [arnB] });
    iotMock.on(ListAttachedPoliciesCommand, { target: arnA }).resolves({ policies: [{ policyName: 'meterbridge-dev-gateway' }] });
    iotMock
      .on(ListAttachedPoliciesCommand, { target: arnB })
      .resolvesOnce({ policies: [{ policyName: 'p1' }], nextMarker: 'm2' })
      .resolvesOnce({ policies: [{ policyName: 'p2' }] });
    iotMock.on(DeleteThingCommand).resolves({});

    const report = await revokeDevice({ iot, thingName: 'gw-0001', deleteThing: true, retryDelaysMs: [0] });

    assert.deepEqual(
      calls().map((c) => [c.name, c.input]),
      [
        ['ListThingPrincipals', { thingName: 'gw-0001', nextToken: undefined }],
        ['ListThingPrincipals', { thingName: 'gw-0001', nextToken: 'page2' }],
        ['UpdateCertificate', { certificateId: certA, newStatus: 'REVOKED' }],
        ['DetachThingPrincipal', { thingName: 'gw-0001', principal: arnA }],
        ['ListAttachedPolicies', { target: arnA, marker: undefined }],
        ['DetachPolicy', { policyName: 'meterbridge-dev-gateway', target: arnA }],
        ['UpdateCertificate', { certificateId: certB, newStatus: 'REVOKED' }],
        ['DetachThingPrincipal', { thingName: 'gw-0001', principal: arnB }],
        ['ListAttachedPolicies', { target: arnB, marker: undefined }],
        ['DetachPolicy', { policyName: 'p1', target: arnB }],
        ['ListAttachedPolicies', { target: arnB, marker: 'm2' }],
        ['DetachPolicy', { policyName: 'p2', target: arnB }],
        ['DeleteThing', { thingName: 'gw-0001' }],
      ],
    );
    assert.deepEqual(report.revokedCertificateIds, [certA, certB]);
    assert.equal(report.thingDeleted, true);
  });

  it('does not delete the thing unless asked', async () => {
    iotMock.on(ListThingPrincipalsCommand).resolves({ principals: [arnA] });
    iotMock.on(ListAttachedPoliciesCommand).resolves({ policies: [] });
    const report = await revokeDevice({ iot, thingName: 'gw-0001' });
    assert.ok(!calls().some((c) => c.name === 'DeleteThing'));
    assert.equal(report.thingDeleted, false);
  });

  it('is idempotent: a thing without principals, or no thing at all, succeeds with nothing revoked', async () => {
    iotMock.on(ListThingPrincipalsCommand).resolves({ principals: [] });
    const empty = await revokeDevice({ iot, thingName: 'gw-0001' });
    assert.deepEqual(empty.revokedCertificateIds, []);
    assert.equal(empty.thingFound, true);
    assert.deepEqual(
      calls().map((c) => c.name),
      ['ListThingPrincipals'],
    );

    iotMock.reset();
    iotMock.on(ListThingPrincipalsCommand).rejects(new ResourceNotFoundException({ message: 'no thing', $metadata: {} }));
    const missing = await revokeDevice({ iot, thingName: 'gw-0001', deleteThing: true });
    assert.equal(missing.thingFound, false);
    assert.deepEqual(
      calls().map((c) => c.name),
      ['ListThingPrincipals'],
    );
  });

  it('retries DeleteThing while detaches propagate, and names the failing step otherwise', async () => {
    iotMock.on(ListThingPrincipalsCommand).resolves({ principals: [arnA] });
    iotMock.on(ListAttachedPoliciesCommand).resolves({ policies: [] });
    iotMock
      .on(DeleteThingCommand)
      .rejectsOnce(new InvalidRequestException({ message: 'principals still attached', $metadata: {} }))
      .resolves({});
    await revokeDevice({ iot, thingName: 'gw-0001', deleteThing: true, retryDelaysMs: [0] });
    assert.equal(calls().filter((c) => c.name === 'DeleteThing').length, 2);

    iotMock.reset();
    iotMock.on(ListThingPrincipalsCommand).resolves({ principals: [arnA] });
    iotMock.on(UpdateCertificateCommand).rejects(new Error('throttled'));
    await assert.rejects(
      revokeDevice({ iot, thingName: 'gw-0001' }),
      new RegExp(`revoking certificate ${certA} failed: throttled \\(revoking is idempotent: run it again\\)`),
    );
  });
});

describe('DER encoding', () => {
  it('encodes OIDs, long lengths and the CSR pieces as DER', () => {
    assert.equal(der.oid('2.5.4.3').toString('hex'), '0603550403');
    assert.equal(der.oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
    assert.equal(der.length(0x7f).toString('hex'), '7f');
    assert.equal(der.length(0x80).toString('hex'), '8180');
    assert.equal(der.length(0x1234).toString('hex'), '821234');
    assert.equal(der.integer(0).toString('hex'), '020100');
    assert.equal(der.tlv(0xa0).toString('hex'), 'a000');
    // Name { CN=gw } as openssl would write it.
    assert.equal(
      der.sequence(der.set(der.sequence(der.oid('2.5.4.3'), der.utf8String('gw')))).toString('hex'),
      '300d310b30090603550403' + '0c026777',
    );
  });
});
