import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ftpsOptionsFrom, pgpKeyFrom, SecretShapeError, sftpOptionsFrom } from '../../lambdas/core/smt/secrets.ts';

const server = { host: 'ftp.example.invalid', port: 21 };
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';

describe('SMT secret shapes', () => {
  it('builds FTPS options and names the missing field without echoing values', () => {
    const options = ftpsOptionsFrom('s', { user: 'u', password: 'hunter2', clientCert: CERT, clientKey: KEY }, server);
    assert.equal(options.user, 'u');
    assert.equal(options.host, 'ftp.example.invalid');
    assert.throws(
      () => ftpsOptionsFrom('s', { user: 'u', clientCert: CERT, clientKey: KEY }, server),
      (e: unknown) => e instanceof SecretShapeError && e.message === 'secret s: field "password" is missing',
    );
    assert.throws(
      () => ftpsOptionsFrom('s', { user: 'u', password: 'hunter2', clientCert: 'hunter2', clientKey: KEY }, server),
      (e: unknown) => e instanceof Error && /not a PEM certificate/.test(e.message) && !e.message.includes('hunter2'),
    );
  });

  it('requires the SFTP host key pin and the PGP key block', () => {
    assert.throws(() => sftpOptionsFrom('s', { username: 'u', privateKey: 'k' }, server), /"hostKeySha256" is missing/);
    assert.throws(() => pgpKeyFrom('p', { armoredKey: 'not a key' }), /not an armored PGP private key/);
    assert.deepEqual(pgpKeyFrom('p', { armoredKey: '-----BEGIN PGP PRIVATE KEY BLOCK-----\n...', passphrase: 'x' }).passphrase, 'x');
  });
});
