/**
 * moto's server (`python3 -m moto.server`, installed on every machine here; GUIDE "This machine")
 * on an ephemeral loopback port: real AWS wire protocols for services without an official local
 * emulator (SQS here), so tests assert what landed in a queue rather than what a mock was asked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { SQSClient } from '@aws-sdk/client-sqs';

export interface Moto {
  url: string;
  sqs(): SQSClient;
  stop(): Promise<void>;
}

const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export async function startMoto(options: { timeoutMs?: number } = {}): Promise<Moto> {
  const child: ChildProcess = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`moto did not start within ${options.timeoutMs ?? 30_000} ms: ${output}`)), options.timeoutMs ?? 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto exited with ${code}: ${output}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
    url,
    sqs: () => new SQSClient({ endpoint: url, region: 'us-east-1', credentials: CREDENTIALS }),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
