/** Shape checks shared by the cdk.json settings parsers (lib/settings.ts and its per-source blocks). */

/** A JSON object (not null, not an array): what every settings block must be. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
