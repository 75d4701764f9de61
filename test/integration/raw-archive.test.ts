import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { ArchiveSizeMismatch, RawArchive } from '../../lambdas/core/raw-archive.ts';
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
    const stored = await archive.put('smt/intervaldata/big.csv.pgp', Readable.from(chunks), { metadata: { source: 'ftps' }, expectedSize: 12 * 1024 * 1024 });
    assert.equal(stored.size, 12 * 1024 * 1024);
    const head = await archive.head('smt/intervaldata/big.csv.pgp');
    assert.equal(head?.metadata.source, 'ftps');
    const hash = createHash('sha256');
    for await (const chunk of await archive.get('smt/intervaldata/big.csv.pgp')) hash.update(chunk as Buffer);
    assert.equal(hash.digest('hex'), expected);
    assert.ok(created.some((event) => event.key === 'smt/intervaldata/big.csv.pgp' && event.size === 12 * 1024 * 1024), 'an object-created event is reported');
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
});
