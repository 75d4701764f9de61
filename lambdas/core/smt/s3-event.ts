/** Archive keys named by an S3 event notification delivered through SQS (the process queue's messages). */

interface S3NotificationRecord {
  eventName?: string;
  s3?: { object?: { key?: string } };
}

/**
 * The object keys of an S3 notification body. S3 URL-encodes keys in notifications (spaces as
 * `+`); the test event S3 sends when the notification is created names none.
 */
export function archiveKeysOf(body: string): string[] {
  let json: { Records?: S3NotificationRecord[]; Event?: string };
  try {
    json = JSON.parse(body) as typeof json;
  } catch {
    throw new Error('queue message is not an S3 event notification (not JSON)');
  }
  if (json.Event === 's3:TestEvent') return [];
  if (!Array.isArray(json.Records)) throw new Error('queue message is not an S3 event notification (no Records)');
  return json.Records.filter((r) => r.eventName?.startsWith('ObjectCreated') && r.s3?.object?.key).map((r) =>
    decodeURIComponent(r.s3!.object!.key!.replace(/\+/g, ' ')),
  );
}
