/**
 * What one store block write changed, from its DynamoDB Streams record (NEW_AND_OLD_IMAGES).
 * Pure: both images are decoded only by the store's own decoder (interval-block.ts decodeBlock /
 * slotToReading), so a change of the block encoding flows through here untouched.
 *
 * A change is every slot of the new image that the old image lacks (a new reading) or held with
 * another value, revision, quality or origin (superseded). A write that changed no slot (none
 * today: the store's conditions refuse duplicates and stale revisions, so they never reach the
 * stream) yields nothing, and so do meter catalog items, removed blocks and records without a
 * new image.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { decodeBlock, slotToReading, type DecodedBlock, type StoredValue } from '../interval-block.ts';
import { identityInstant, type Reading, type Source } from '../../../shared/reading.ts';

/** The part of a DynamoDB Streams record the feed reads (Lambda's event and GetRecords share it). */
export interface BlockStreamRecord {
  eventID?: string;
  eventName?: 'INSERT' | 'MODIFY' | 'REMOVE' | string;
  dynamodb?: {
    Keys?: Record<string, AttributeValue>;
    NewImage?: Record<string, AttributeValue>;
    OldImage?: Record<string, AttributeValue>;
    SequenceNumber?: string;
    /** Epoch seconds (Lambda event) */
    ApproximateCreationDateTime?: number;
  };
}

export interface ChangedReading {
  reading: Reading;
  /** What the slot held before; undefined for a new reading. */
  previous?: StoredValue;
}

export interface BlockChange {
  meterId: string;
  channel: string;
  /** The block's local day (its sort key). */
  day: string;
  /** The block's write counter after this write: with the key, the consumers' dedupe key. */
  version: number;
  /** `<pk>/<day>/v<version>`: the same for every delivery of this write (see docs/readings-feed.md). */
  dedupeKey: string;
  sequenceNumber: string;
  /** When the store wrote it, epoch milliseconds. */
  writtenAt: number;
  /** Changed readings in time order. */
  changed: ChangedReading[];
}

/** The block change a stream record carries, or undefined when it changed no reading. */
export function blockChange(record: BlockStreamRecord): BlockChange | undefined {
  const image = record.dynamodb?.NewImage;
  const pk = record.dynamodb?.Keys?.pk?.S ?? image?.pk?.S;
  // Catalog items live in the same table under '#catalog#' keys; meter ids never start with '#'.
  if (record.eventName === 'REMOVE' || image === undefined || pk === undefined || pk.startsWith('#')) return undefined;
  const block = decodeBlock(image);
  const before: DecodedBlock | undefined = record.dynamodb?.OldImage ? decodeBlock(record.dynamodb.OldImage) : undefined;
  // pk = "<meterId>#<channel>"; channels have no '#'.
  const split = pk.lastIndexOf('#');
  const meterId = pk.slice(0, split);
  const channel = pk.slice(split + 1);
  const changed: ChangedReading[] = [];
  for (const [slot, stored] of block.slots) {
    const previous = before?.slots.get(slot);
    if (previous && sameValue(previous, stored)) continue;
    changed.push({ reading: slotToReading(meterId, channel, block, slot, stored), ...(previous ? { previous } : {}) });
  }
  if (changed.length === 0) return undefined;
  changed.sort((a, b) => identityInstant(a.reading).getTime() - identityInstant(b.reading).getTime());
  const approximate = record.dynamodb?.ApproximateCreationDateTime;
  return {
    meterId,
    channel,
    day: block.sk,
    version: block.version,
    dedupeKey: `${pk}/${block.sk}/v${block.version}`,
    sequenceNumber: record.dynamodb?.SequenceNumber ?? '',
    writtenAt: block.updatedAt !== undefined ? block.updatedAt * 1000 : approximate !== undefined ? approximate * 1000 : Date.now(),
    changed,
  };
}

function sameValue(a: StoredValue, b: StoredValue): boolean {
  return a.value === b.value && a.revision === b.revision && a.quality === b.quality && a.origin === b.origin;
}

/** The sources and origins (`<source>:<originId>`) of the changed readings, each once, in order of appearance. */
export function originsOf(change: BlockChange): { sources: Source[]; origins: string[] } {
  const sources = new Set<Source>();
  const origins = new Set<string>();
  for (const { reading } of change.changed) {
    sources.add(reading.source);
    origins.add(`${reading.source}:${reading.originId}`);
  }
  return { sources: [...sources], origins: [...origins] };
}
