/**
 * Handling JSON from outside (telemetry, READY callbacks, SQS envelopes) without letting its
 * shape decide how much work or stack we spend on it.
 *
 * Why: `JSON.parse` copes with 20,000 nested arrays, but anything that later walks the value
 * recursively does not. `JSON.stringify(value)` in an error message overflowed the stack on such
 * a value and turned one bad telemetry message into a failed SQS batch. So: nesting is bounded
 * before anything looks at the value, and error messages only ever show a bounded preview.
 */

/** Characters of a preview, unless the caller asks for fewer or more. */
const PREVIEW_CHARS = 80;
/** Levels a preview descends into arrays and objects, and entries it shows of each. */
const PREVIEW_DEPTH = 2;
const PREVIEW_ENTRIES = 5;
/** A string longer than this is cut before it is quoted (quoting a 4 MB string costs 4 MB). */
const PREVIEW_STRING_CHARS = 200;

/**
 * A short, bounded rendering of any value for an error message or a log line: at most `maxChars`
 * characters, however large or deep the value is. The only way input is shown in a refusal.
 */
export function preview(value: unknown, maxChars = PREVIEW_CHARS): string {
  const text = render(value, PREVIEW_DEPTH);
  return text.length > maxChars ? `${text.slice(0, Math.max(0, maxChars - 1))}…` : text;
}

function render(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > PREVIEW_STRING_CHARS ? `${value.slice(0, PREVIEW_STRING_CHARS)}…` : value);
    case 'number':
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'object':
      break;
    default:
      return typeof value;
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    if (depth === 0) return `[…${value.length} items]`;
    const shown = value.slice(0, PREVIEW_ENTRIES).map((entry) => render(entry, depth - 1));
    return `[${shown.join(',')}${value.length > PREVIEW_ENTRIES ? ',…' : ''}]`;
  }
  if (depth === 0) return '{…}';
  const entries: string[] = [];
  let more = false;
  // for..in stops early; Object.keys would list every key of a huge object first.
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (entries.length === PREVIEW_ENTRIES) {
      more = true;
      break;
    }
    entries.push(`${render(key, 0)}:${render((value as Record<string, unknown>)[key], depth - 1)}`);
  }
  return `{${entries.join(',')}${more ? ',…' : ''}}`;
}

export type UntrustedJson = { ok: true; value: unknown } | { ok: false; code: 'not-json' | 'too-deep'; reason: string };

/**
 * Parses JSON text, refusing it (without parsing) when arrays and objects nest deeper than
 * `maxDepth`. The depth scan is one pass over the characters, with no recursion.
 */
export function parseUntrustedJson(text: string, maxDepth: number): UntrustedJson {
  const depth = nestingDepthExceeds(text, maxDepth);
  if (depth !== undefined) return { ok: false, code: 'too-deep', reason: `JSON nests deeper than ${maxDepth} levels (at character ${depth})` };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return {
      ok: false,
      code: 'not-json',
      reason: `not JSON: ${preview(error instanceof Error ? error.message : String(error), 200).replace(/^"|"$/g, '')}`,
    };
  }
}

/** The character index at which `[`/`{` nesting first exceeds `maxDepth`, or undefined if it never does. */
export function nestingDepthExceeds(text: string, maxDepth: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return undefined;
}
