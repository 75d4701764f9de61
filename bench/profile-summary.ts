/**
 * Summarizes a V8 .cpuprofile (node --cpu-prof) as self time per function, largest first, and
 * per package or source folder: what docs/performance.md quotes to say where the time goes.
 * Usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=25] [bundle index.mjs.map]
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: a package under node_modules, a bundle, or the runtime. */
function placeOf(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:') || url === '') return 'node (runtime, GC, natives)';
  return url.replace(/^.*\//, '');
}

let bundleMap: string | undefined;
const sourceMaps = new Map<string, SourceMap | undefined>();

/** A bundle's frame named by its original source (the bundle's .map), so minified names read. */
function original(frame: ProfileNode['callFrame']): { place: string; name: string } {
  if (!frame.url.startsWith('file://')) return { place: placeOf(frame.url), name: frame.functionName };
  let map = sourceMaps.get(frame.url);
  if (!sourceMaps.has(frame.url)) {
    // The bench's runtime root is gone after the run: a map given on the command line stands in.
    const beside = `${fileURLToPath(frame.url)}.map`;
    const file = existsSync(beside) ? beside : frame.url.endsWith('/index.mjs') ? (bundleMap ?? '') : '';
    map = existsSync(file) ? new SourceMap(JSON.parse(readFileSync(file, 'utf8'))) : undefined;
    sourceMaps.set(frame.url, map);
  }
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber);
  if (!entry || !('originalSource' in entry)) return { place: placeOf(frame.url), name: frame.functionName };
  const source = entry.originalSource.replace(/^.*?(node_modules\/|\.\.\/)+/, '');
  return {
    place: placeOf(entry.originalSource).startsWith('node') ? source : placeOf(entry.originalSource),
    name: `${(entry as { name?: string }).name ?? frame.functionName} ${source}:${entry.originalLine + 1}`,
  };
}

export function summarizeProfile(profile: Profile, top = 25): string[] {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfByFunction = new Map<string, number>();
  const selfByPlace = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(id)!.callFrame;
    if (frame.functionName === '(idle)') return;
    total += delta;
    const mapped = original(frame);
    const name = mapped.name.includes(' ') ? mapped.name : `${mapped.name || '(anonymous)'} ${placeOf(frame.url)}:${frame.lineNumber + 1}`;
    selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + delta);
    selfByPlace.set(mapped.place, (selfByPlace.get(mapped.place) ?? 0) + delta);
  });
  const rows = (map: Map<string, number>, n: number) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, micros]) => `| ${name.replace(/\|/g, '\\|')} | ${((100 * micros) / total).toFixed(1)} % |`);
  return [
    `Busy time sampled: ${(total / 1000).toFixed(0)} ms.`,
    '',
    '| where (self time) | share |',
    '| --- | ---: |',
    ...rows(selfByPlace, 10),
    '',
    '| function (self time) | share |',
    '| --- | ---: |',
    ...rows(selfByFunction, top),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top, map] = process.argv.slice(2);
  bundleMap = map;
  if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]');
  process.stdout.write(`${summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(top ?? 25)).join('\n')}\n`);
}
