/** One benchmark section of `npm run bench`: a title and the markdown lines it measured. */
export interface BenchSection {
  title: string;
  /** Runs the benchmark and returns markdown lines (tables, notes) for bench/RESULTS.md. */
  run(): Promise<string[]>;
}
