import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger, LedgerLockLostError } from '../../lambdas/core/ledger.ts';
import { FUNCTION_TIMEOUT_SECONDS, LOCK_SECONDS, type UnitKind } from '../../lambdas/core/work-units.ts';
import { startDynamoDbLocal, type LocalDynamo } from '../support/dynamodb-local.ts';

let dynamo: LocalDynamo;
before(async () => {
  dynamo = await startDynamoDbLocal();
});
after(async () => {
  await dynamo?.stop();
});

/** A ledger whose clock the test moves by hand. */
async function freshLedger(lockSeconds = 60): Promise<{ ledger: Ledger; clock: { now: Date } }> {
  const tables = await dynamo.freshTables();
  const clock = { now: new Date('2026-11-23T10:00:00Z') };
  return { ledger: new Ledger({ client: dynamo.client, tableName: tables.ledger, lockSeconds, clock: () => clock.now }), clock };
}

const later = (clock: { now: Date }, seconds: number) => {
  clock.now = new Date(clock.now.getTime() + seconds * 1000);
};

describe('Ledger on DynamoDB Local', () => {
  it("holds a claim for its kind's lock time, longer than the function working on it may run", async () => {
    const tables = await dynamo.freshTables();
    const now = new Date('2026-11-23T10:00:00Z');
    const ledger = new Ledger({ client: dynamo.client, tableName: tables.ledger, clock: () => now });
    for (const kind of Object.keys(LOCK_SECONDS) as UnitKind[]) {
      assert.ok(LOCK_SECONDS[kind] > FUNCTION_TIMEOUT_SECONDS[kind], `${kind}: the lock outlives the function timeout`);
      const claimed = await ledger.claim(kind, `unit-of-${kind}`);
      assert.equal(claimed.status, 'claimed');
      const record = await ledger.get(kind, `unit-of-${kind}`);
      assert.equal(record?.lockExpiresAt, now.getTime() / 1000 + LOCK_SECONDS[kind], kind);
    }
  });

  it('claims a new unit, completes it with counts, and refuses a second claim of the completed unit', async () => {
    const { ledger } = await freshLedger();

    const first = await ledger.claim('smt-file', 'IntervalMeterUsage01.csv.asc#1024#1700000000', { detail: { size: 1024 } });
    assert.equal(first.status, 'claimed');
    assert.ok(first.status === 'claimed');
    assert.equal(first.attempt, 1);
    await ledger.complete(first.claim, { stored: 96, duplicate: 0 });
    const second = await ledger.claim('smt-file', 'IntervalMeterUsage01.csv.asc#1024#1700000000');

    assert.equal(second.status, 'completed');
    assert.ok(second.status === 'completed');
    assert.deepEqual(second.record.counts, { stored: 96, duplicate: 0 });
    assert.deepEqual(second.record.detail, { size: 1024 });
  });

  it('refuses a claim while another worker holds a live lock', async () => {
    const { ledger, clock } = await freshLedger(60);
    await ledger.claim('iot-message', 'gw-1/42');
    later(clock, 59);

    const result = await ledger.claim('iot-message', 'gw-1/42');

    assert.equal(result.status, 'in_progress');
  });

  it('lets an expired in-progress claim be re-taken, and the old holder can no longer complete', async () => {
    const { ledger, clock } = await freshLedger(60);
    const crashed = await ledger.claim('iot-message', 'gw-1/43');
    assert.ok(crashed.status === 'claimed');
    later(clock, 61);

    const retaken = await ledger.claim('iot-message', 'gw-1/43');

    assert.ok(retaken.status === 'claimed');
    assert.equal(retaken.attempt, 2);
    assert.equal(retaken.retakenFrom, 'expired');
    await assert.rejects(ledger.complete(crashed.claim, { stored: 1 }), LedgerLockLostError);
    await ledger.complete(retaken.claim, { stored: 1 });
    assert.equal((await ledger.get('iot-message', 'gw-1/43'))?.status, 'completed');
  });

  it('lets exactly one of two (or twenty) concurrent claims win', async () => {
    const { ledger } = await freshLedger();

    const results = await Promise.all(Array.from({ length: 20 }, () => ledger.claim('ready-delivery', 'delivery-7')));

    assert.equal(results.filter((r) => r.status === 'claimed').length, 1);
    assert.equal(results.filter((r) => r.status === 'in_progress').length, 19);
  });

  it('keeps a failed unit failed with its reason until a replay re-takes it', async () => {
    const { ledger } = await freshLedger();
    const claim = await ledger.claim('smt-file', 'tampered.asc');
    assert.ok(claim.status === 'claimed');
    await ledger.fail(claim.claim, 'PGP integrity check failed: modification detected');

    const plain = await ledger.claim('smt-file', 'tampered.asc');
    const replay = await ledger.claim('smt-file', 'tampered.asc', { retakeFailed: true });

    assert.equal(plain.status, 'failed');
    assert.ok(plain.status === 'failed');
    assert.match(plain.record.reason ?? '', /integrity/);
    assert.ok(replay.status === 'claimed');
    assert.equal(replay.retakenFrom, 'failed');
    assert.equal((await ledger.get('smt-file', 'tampered.asc'))?.reason, undefined);
  });

  it('releases a claim after a transient error so the next delivery can take it at once', async () => {
    const { ledger } = await freshLedger(900);
    const claim = await ledger.claim('iot-message', 'gw-2/1');
    assert.ok(claim.status === 'claimed');

    await ledger.release(claim.claim);
    const next = await ledger.claim('iot-message', 'gw-2/1');

    assert.equal(next.status, 'claimed');
  });

  it('keeps kinds apart: the same id under two kinds is two units', async () => {
    const { ledger } = await freshLedger();

    const a = await ledger.claim('iot-message', 'same-id');
    const b = await ledger.claim('ready-delivery', 'same-id');

    assert.equal(a.status, 'claimed');
    assert.equal(b.status, 'claimed');
  });
});
