// s3rver ships no types; only what local/s3-server.ts uses is declared.
declare module 's3rver' {
  import { EventEmitter } from 'node:events';
  interface S3rverOptions {
    port?: number;
    address?: string;
    silent?: boolean;
    directory: string;
  }
  export default class S3rver extends EventEmitter {
    constructor(options: S3rverOptions);
    run(): Promise<unknown>;
    close(): Promise<void>;
  }
}
