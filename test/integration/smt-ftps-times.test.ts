/**
 * FTPS listing times against proftpd, the SMT stand-in: with MLSD (full UTC timestamps), without it
 * (LIST shows "Nov 28 07:50", no year: the transport asks MDTM), and with neither (a refusal, never
 * a guessed year: `new Date("Nov 30 05:18")` is a day in 2001).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectFtps, FtpsListingError } from '../../lambdas/core/smt/transport/ftps.ts';
import { shareTree, startLocalSmtServers, type LocalSmtServers } from '../../local/smt-servers.ts';

// Recent (LIST shows month, day and time) and old (LIST shows month, day and year), to the second.
const RECENT = new Date(Math.floor((Date.now() - 2 * 86_400_000) / 1000) * 1000);
const OLD = new Date('2025-03-01T12:34:56Z');

for (const times of [
  { mlsd: true, mdtm: true },
  { mlsd: false, mdtm: true },
  { mlsd: false, mdtm: false },
]) {
  describe(`FTPS listing times, MLSD ${times.mlsd ? 'on' : 'off'}, MDTM ${times.mdtm ? 'on' : 'off'}`, () => {
    let work: string;
    let servers: LocalSmtServers;
    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'mb-ftps-times-'));
      chmodSync(work, 0o711); // the server serves as nobody, who must reach the served folder
      const root = join(work, 'served');
      mkdirSync(join(root, 'intervaldata'), { recursive: true });
      writeFileSync(join(root, 'intervaldata', 'recent.csv.pgp'), 'recent');
      writeFileSync(join(root, 'intervaldata', 'old.csv.pgp'), 'old file');
      servers = await startLocalSmtServers({ root, stateDir: join(work, 'state'), ftpsTimes: times });
      await shareTree(root);
      utimesSync(join(root, 'intervaldata', 'recent.csv.pgp'), RECENT, RECENT);
      utimesSync(join(root, 'intervaldata', 'old.csv.pgp'), OLD, OLD);
    });
    after(async () => {
      await servers?.stop();
      rmSync(work, { recursive: true, force: true });
    });

    if (times.mlsd || times.mdtm) {
      it('lists each file with its exact modification time', async () => {
        const transport = await connectFtps({ ...servers.ftps, timeoutMs: 20_000 });
        try {
          const files = await transport.list('intervaldata');
          const byName = Object.fromEntries(files.map((f) => [f.name, f]));
          assert.equal(byName['recent.csv.pgp']?.modifiedAt.toISOString(), RECENT.toISOString());
          assert.equal(byName['old.csv.pgp']?.modifiedAt.toISOString(), OLD.toISOString());
          assert.equal(byName['old.csv.pgp']?.size, 8);
        } finally {
          await transport.close();
        }
      });
    } else {
      it('refuses to list rather than guess a year', async () => {
        const transport = await connectFtps({ ...servers.ftps, timeoutMs: 20_000 });
        try {
          await assert.rejects(transport.list('intervaldata'), (error: unknown) => {
            assert.ok(error instanceof FtpsListingError, String(error));
            assert.match(error.message, /offers neither MLSD nor MDTM for intervaldata\/(recent|old)\.csv\.pgp/);
            return true;
          });
        } finally {
          await transport.close();
        }
      });
    }
  });
}
