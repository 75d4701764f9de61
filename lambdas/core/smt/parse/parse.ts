/**
 * One entry point for clear SMT content: detects the layout from the first line (the interval
 * CSV header, or an LSE 00000001 record) and yields whole local days. Anything else is refused
 * with the line it saw, so a drifted layout is a clear failure and never a wrong reading.
 *
 * The interval CSV parser reads the lines as bytes (it carries gigabytes; see interval-csv.ts);
 * the LSE parser takes them as text.
 */
import { IntervalCsvParser, isIntervalCsvHeader } from './interval-csv.ts';
import { lineBlocks, lineText } from './lines.ts';
import { isLseRecord, LseParser } from './lse.ts';
import { DailyReadsParser, isDailyReadsHeader, isMonthlyBillingHeader, looksLikeIntervalCsv } from './reports.ts';
import { SmtLayoutError, type ParseOptions, type SmtDay } from '../model.ts';

export type { SmtLayout } from '../model.ts';

export async function* parseSmt(source: AsyncIterable<Uint8Array | string>, options: ParseOptions): AsyncGenerator<SmtDay[]> {
  let parser: IntervalCsvParser | LseParser | DailyReadsParser | undefined;
  let lineNumber = 0;
  for await (const block of lineBlocks(source)) {
    const days: SmtDay[] = [];
    let i = 0;
    // Text lines until the layout is known, and all along for LSE.
    for (; i < block.count && !(parser instanceof IntervalCsvParser); i++) {
      const line = lineText(block, i);
      if (!parser) {
        if (line.trim() === '') {
          lineNumber += 1;
          continue;
        }
        parser = detect(line, lineNumber + 1, options);
        if (parser instanceof IntervalCsvParser) break; // it takes its header line as bytes, below
      }
      lineNumber += 1;
      append(days, parser.push(line, lineNumber));
    }
    if (parser instanceof IntervalCsvParser && i < block.count) {
      append(days, parser.pushLines(block, i, lineNumber + 1));
      lineNumber += block.count - i;
    }
    if (days.length > 0) yield days;
  }
  if (!parser) throw new SmtLayoutError('empty file: neither an interval CSV nor an LSE file');
  const rest = parser.end();
  if (rest.length > 0) yield rest;
}

function append(days: SmtDay[], more: SmtDay[]): void {
  for (const day of more) days.push(day);
}

/**
 * Every type SMT delivers is recognised by its first line: interval CSV, LSE, daily register reads;
 * monthly billing is recognised and refused by decision (`unsupported-type`); a drifted interval
 * header is a `layout` error; anything else is `unknown-type`.
 */
function detect(line: string, lineNumber: number, options: ParseOptions): IntervalCsvParser | LseParser | DailyReadsParser {
  if (isIntervalCsvHeader(line)) return new IntervalCsvParser(options);
  if (isLseRecord(line)) return new LseParser(options);
  if (isDailyReadsHeader(line)) return new DailyReadsParser(options);
  const seen = JSON.stringify(line.slice(0, 200));
  if (isMonthlyBillingHeader(line))
    throw new SmtLayoutError(`monthly billing summary (header ${seen}): not stored by decision (docs/smt.md)`, lineNumber, 'unsupported-type');
  if (looksLikeIntervalCsv(line))
    throw new SmtLayoutError(`unknown layout: first line ${seen} is a drifted interval CSV header; expected the exact header`, lineNumber);
  throw new SmtLayoutError(
    `unknown layout: first line ${seen} is none of interval CSV, LSE 00000001, daily register reads or monthly billing`,
    lineNumber,
    'unknown-type',
  );
}

/** Parses everything into memory (tests, small files); the process step streams instead. */
export async function parseSmtAll(source: AsyncIterable<Uint8Array | string>, options: ParseOptions): Promise<SmtDay[]> {
  const all: SmtDay[] = [];
  for await (const days of parseSmt(source, options)) all.push(...days);
  return all;
}
