/**
 * Stream images handed to the feed in local mode and in the artifact stage take the form Lambda's
 * event source mapping delivers: binary attributes (a packed block's `p`) as base64 strings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toLambdaImage } from '../../local/readings-feed.ts';

describe('toLambdaImage', () => {
  it('turns binary values into base64 at any depth and leaves the rest as it is', () => {
    const bytes = Uint8Array.from([0, 1, 2, 250, 255]);
    const image = toLambdaImage({
      pk: { S: 'm1#energy' },
      p: { B: bytes },
      s0: { L: [{ N: '1.5' }, { B: bytes }] },
      m: { M: { inner: { BS: [bytes, Uint8Array.from([7])] } } },
    });
    assert.deepEqual(JSON.parse(JSON.stringify(image)), {
      pk: { S: 'm1#energy' },
      p: { B: 'AAEC+v8=' },
      s0: { L: [{ N: '1.5' }, { B: 'AAEC+v8=' }] },
      m: { M: { inner: { BS: ['AAEC+v8=', 'Bw=='] } } },
    });
    assert.equal(toLambdaImage(undefined), undefined);
  });
});
