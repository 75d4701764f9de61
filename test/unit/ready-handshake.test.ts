import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  SecretEncodingError,
  handshakeKeyIsSigningKey,
  verificationAnswer,
  verificationConfigFromEnv,
  DEFAULT_VERIFICATION,
} from '../../lambdas/core/ready/handshake.ts';

// Published HMAC-SHA256 test vector (RFC 4231 test case 2): key "Jefe", data "what do ya want for nothing?".
const RFC4231_HEX = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843';

describe('verificationAnswer', () => {
  it("defaults to Base64 HMAC-SHA256 with the secret's UTF-8 bytes as key (RFC 4231 vector)", () => {
    assert.equal(verificationAnswer('what do ya want for nothing?', 'Jefe'), Buffer.from(RFC4231_HEX, 'hex').toString('base64'));
  });

  it('decodes a Base64 secret to key bytes when configured', () => {
    const secret = Buffer.from('Jefe').toString('base64'); // "SmVmZQ=="
    const answer = verificationAnswer('what do ya want for nothing?', secret, { ...DEFAULT_VERIFICATION, secretEncoding: 'base64' });
    assert.equal(answer, Buffer.from(RFC4231_HEX, 'hex').toString('base64'));
    assert.notEqual(verificationAnswer('what do ya want for nothing?', secret), answer, 'the UTF-8 reading of the same secret differs');
  });

  it('computes SHA-256(token bytes followed by secret bytes) for the alternative algorithm', () => {
    // SHA-256("abc") is the FIPS 180-2 vector; split as token "a" + secret "bc".
    assert.equal(
      verificationAnswer('a', 'bc', { ...DEFAULT_VERIFICATION, algorithm: 'sha256-token-secret' }),
      Buffer.from('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'hex').toString('base64'),
    );
  });

  it('differs for another token or another secret', () => {
    const a = verificationAnswer('token-1', 'secret');
    assert.notEqual(verificationAnswer('token-2', 'secret'), a);
    assert.notEqual(verificationAnswer('token-1', 'secret2'), a);
    assert.equal(a, createHmac('sha256', 'secret').update('token-1').digest('base64'));
    assert.notEqual(a, createHash('sha256').update('token-1secret').digest('base64'));
  });

  it('refuses a secret configured as Base64 that is not Base64, instead of hashing with a wrong key', () => {
    assert.throws(() => verificationAnswer('t', 'not base64!', { ...DEFAULT_VERIFICATION, secretEncoding: 'base64' }), SecretEncodingError);
  });
});

describe('verificationConfigFromEnv', () => {
  it('defaults when nothing is set', () => {
    assert.deepEqual(verificationConfigFromEnv({}), DEFAULT_VERIFICATION);
  });

  it('reads the three variables and names a wrong one', () => {
    assert.deepEqual(
      verificationConfigFromEnv({
        READY_VERIFICATION_ALGORITHM: 'sha256-token-secret',
        READY_SECRET_ENCODING: 'base64',
        READY_VERIFICATION_ANSWER: 'json',
      }),
      { algorithm: 'sha256-token-secret', secretEncoding: 'base64', answerFormat: 'json' },
    );
    assert.throws(() => verificationConfigFromEnv({ READY_VERIFICATION_ALGORITHM: 'md5' }), /READY_VERIFICATION_ALGORITHM/);
  });

  it('recognizes a signing key that is the handshake key, as key bytes under the configured encoding', () => {
    const base64 = { ...DEFAULT_VERIFICATION, secretEncoding: 'base64' as const };
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'same', signingKey: 'same' }), true);
    // The handshake HMACs with the decoded bytes of "c2FtZQ==" = "same", the signature with "same".
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'c2FtZQ==', signingKey: 'same' }, base64), true);
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'c2FtZQ==', signingKey: 'same' }), false);
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'secret', signingKey: 'other' }), false);
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'secret' }), false);
    assert.equal(handshakeKeyIsSigningKey({ clientSecret: 'not base64!', signingKey: 'x' }, base64), false);
  });
});
