/**
 * Replays archived READY callbacks: each original is read back from the archive and judged by the
 * same steps as on arrival after archiving (handleArchivedCallback: size, credentials, signature,
 * content type, JSON, mapping, grid, ledger, store), with the headers that mattered restored from
 * the object's metadata. Nothing is archived again: the object being replayed is the original.
 *
 * Used after a fix (a mapping that learnt a new register, a larger body limit, a store that was
 * down): `aws lambda invoke --function-name <webhook> --payload '{"replayKeys": ["ready/data/..."]}'`.
 * A delivery already stored is answered `duplicate` by the ledger, so replaying too much is safe.
 */
import type { RawArchive } from '../raw-archive.ts';
import { SIGNATURE_HEADER, handleArchivedCallback, type ArchivedCallbackDependencies, type ReadyResponse, type ReadyRoute } from './webhook.ts';

export interface ReplayEvent {
  replayKeys: string[];
}

export function isReplayEvent(event: unknown): event is ReplayEvent {
  return (
    typeof event === 'object' &&
    event !== null &&
    Array.isArray((event as ReplayEvent).replayKeys) &&
    (event as ReplayEvent).replayKeys.every((key) => typeof key === 'string')
  );
}

export interface ReplayResult {
  key: string;
  statusCode: number;
  body: unknown;
}

/** At most this many keys per invocation, so one replay fits in the function's timeout. */
export const MAX_REPLAY_KEYS = 50;

export async function replayArchived(
  keys: readonly string[],
  deps: Omit<ArchivedCallbackDependencies, 'metrics'> & {
    archive: Pick<RawArchive, 'get' | 'head'>;
    metrics: () => ArchivedCallbackDependencies['metrics'];
  },
): Promise<ReplayResult[]> {
  if (keys.length > MAX_REPLAY_KEYS) throw new Error(`replay at most ${MAX_REPLAY_KEYS} keys per invocation (got ${keys.length})`);
  const results: ReplayResult[] = [];
  for (const key of keys) {
    const head = await deps.archive.head(key);
    if (!head) {
      results.push({ key, statusCode: 404, body: { error: { code: 'not_archived', message: `no archived callback at ${key}` } } });
      continue;
    }
    const route = head.metadata.route;
    if (route !== 'data' && route !== 'status') {
      results.push({ key, statusCode: 400, body: { error: { code: 'not_a_callback', message: `${key} has no READY route in its metadata` } } });
      continue;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of await deps.archive.get(key)) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    if (head.metadata.contenttype) headers['content-type'] = head.metadata.contenttype;
    if (head.metadata.signature) headers[SIGNATURE_HEADER] = head.metadata.signature;
    const response: ReadyResponse = await handleArchivedCallback(
      { route: route as ReadyRoute, method: 'POST', headers, query: {}, body, requestId: `replay-${head.metadata.requestid ?? 'unknown'}` },
      key,
      { ...deps, metrics: deps.metrics() },
    );
    let parsed: unknown = response.body;
    try {
      parsed = JSON.parse(response.body);
    } catch {
      // a handshake answer is text
    }
    deps.log.info('archived callback replayed', { key, statusCode: response.statusCode });
    results.push({ key, statusCode: response.statusCode, body: parsed });
  }
  return results;
}
