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
import { SmtLayoutError, type ParseOptions, type SmtDay } from '../model.ts';

export type SmtLayout = 'interval-csv' | 'lse';

export async function* parseSmt(source: AsyncIterable<Uint8Array | string>, options: ParseOptions): AsyncGenerator<SmtDay[]> {
  let parser: IntervalCsvParser | LseParser | undefined;
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

function detect(line: string, lineNumber: number, options: ParseOptions): IntervalCsvParser | LseParser {
  if (isIntervalCsvHeader(line)) return new IntervalCsvParser(options);
  if (isLseRecord(line)) return new LseParser(options);
  throw new SmtLayoutError(
    `unknown layout: first line ${JSON.stringify(line.slice(0, 200))} is neither the interval CSV header nor an LSE 00000001 record`,
    lineNumber,
  );
}

/** Parses everything into memory (tests, small files); the process step streams instead. */
export async function parseSmtAll(source: AsyncIterable<Uint8Array | string>, options: ParseOptions): Promise<SmtDay[]> {
  const all: SmtDay[] = [];
  for await (const days of parseSmt(source, options)) all.push(...days);
  return all;
}
