import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { ArchiveHeadForbidden, ArchiveSizeMismatch, classifyHeadError, RawArchive } from '../../lambdas/core/raw-archive.ts';
import { startS3WithoutList } from '../support/s3-without-list.ts';
import { startLocalS3, type LocalS3, type ObjectCreated } from '../../local/s3-server.ts';

describe('RawArchive against s3rver on loopback', () => {
  let s3: LocalS3;
  const created: ObjectCreated[] = [];
  before(async () => {
    s3 = await startLocalS3({ buckets: ['raw-archive'] });
    s3.onObjectCreated((event) => created.push(event));
  });
  after(async () => s3.stop());

  it('streams a multipart body, verifies the stored size, and reads back the same bytes', async () => {
    const archive = new RawArchive({ client: s3.client, bucket: 'raw-archive', partSize: 5 * 1024 * 1024 });
    const chunks = Array.from({ length: 12 }, (_, i) => Buffer.alloc(1024 * 1024, i));
    const expected = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    const stored = await archive.put('smt/intervaldata/big.csv.pgp', Readable.from(chunks), {
      metadata: { source: 'ftps' },
      expectedSize: 12 * 1024 * 1024,
    });
    assert.equal(stored.size, 12 * 1024 * 1024);
    const head = await archive.head('smt/intervaldata/big.csv.pgp');
    assert.equal(head?.metadata.source, 'ftps');
    const hash = createHash('sha256');
    for await (const chunk of await archive.get('smt/intervaldata/big.csv.pgp')) hash.update(chunk as Buffer);
    assert.equal(hash.digest('hex'), expected);
    assert.ok(
      created.some((event) => event.key === 'smt/intervaldata/big.csv.pgp' && event.size === 12 * 1024 * 1024),
      'an object-created event is reported',
    );
  });

  it('refuses when fewer bytes arrived than the listing announced', async () => {
    const archive = new RawArchive({ client: s3.client, bucket: 'raw-archive' });
    await assert.rejects(archive.put('short.pgp', Buffer.from('truncated'), { expectedSize: 100 }), ArchiveSizeMismatch);
  });

  it('fails the put when the source stream fails part-way', async () => {
    const archive = new RawArchive({ client: s3.client, bucket: 'raw-archive' });
    const failing = new Readable({
      read() {
        this.destroy(new Error('connection reset by peer'));
      },
    });
    await assert.rejects(archive.put('broken.pgp', failing), /connection reset/);
    assert.equal(await archive.head('broken.pgp'), undefined);
  });

  it('head of a missing key is undefined', async () => {
    const archive = new RawArchive({ client: s3.client, bucket: 'raw-archive' });
    assert.equal(await archive.head('nope'), undefined);
  });

  it('head of a missing key answered 403 (S3 without s3:ListBucket) is a typed ArchiveHeadForbidden, not an unknown error', async () => {
    const noList = await startS3WithoutList(s3.endpoint);
    try {
      const archive = new RawArchive({ client: noList.client, bucket: 'raw-archive' });
      const error = await archive.head('smt/intervaldata/not-yet.pgp').then(
        () => assert.fail('a 403 must not read as a stored object'),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof ArchiveHeadForbidden, String(error));
      assert.equal(error.key, 'smt/intervaldata/not-yet.pgp');
      assert.equal(classifyHeadError(error.cause), 'forbidden');
      assert.deepEqual(noList.forbiddenHeads, ['/raw-archive/smt/intervaldata/not-yet.pgp']);
      // An object that exists is read through the same proxy as before.
      await archive.put('smt/intervaldata/there.pgp', Buffer.from('held'), { expectedSize: 4 });
      assert.equal((await archive.head('smt/intervaldata/there.pgp'))?.size, 4);
    } finally {
      await noList.stop();
    }
  });

  it('classifies HeadObject failures: 404 absent, 403 forbidden, anything else an error', () => {
    assert.equal(classifyHeadError({ name: 'NotFound', $metadata: { httpStatusCode: 404 } }), 'absent');
    assert.equal(classifyHeadError({ name: 'Forbidden', $metadata: { httpStatusCode: 403 } }), 'forbidden');
    assert.equal(classifyHeadError({ name: 'InternalError', $metadata: { httpStatusCode: 500 } }), 'error');
    assert.equal(classifyHeadError(new Error('socket hang up')), 'error');
  });
});
