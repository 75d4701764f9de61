/** `npm run fuzz`'s last step: the per-target figures of bench/fuzz-report.jsonl as bench/FUZZ.md. */
import { readFileSync, writeFileSync } from 'node:fs';
import type { FuzzReport } from './support.ts';

const reportFile = new URL('../../bench/fuzz-report.jsonl', import.meta.url);
const reports = readFileSync(reportFile, 'utf8')
  .trim()
  .split('\n')
  .filter(Boolean)
  .map((line) => JSON.parse(line) as FuzzReport)
  .filter((report) => !report.target.startsWith('harness-'));
const rows = reports.map(
  (r) =>
    `| ${r.target} | ${r.cases} | ${r.accepted} | ${r.refused} | ${r.crashes} | ${r.hangs} | ${r.wronglyAccepted} | ${r.invariantFailures} | ${r.seconds.toFixed(1)} |`,
);
const text = [
  '# Fuzzing results',
  '',
  `\`npm run fuzz\`, ${new Date().toISOString().slice(0, 10)}, seed ${reports[0]?.seed ?? '-'}, Node ${process.version}. Every target must show 0 crashes, 0 hangs, 0 wrongly accepted.`,
  '',
  '| target | cases | accepted | refused | crashes | hangs | wrongly accepted | broken invariants | seconds |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows,
  '',
].join('\n');
writeFileSync(new URL('../../bench/FUZZ.md', import.meta.url), text);
process.stdout.write(text);
