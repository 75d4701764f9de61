/**
 * Where the SMT fetch and process steps meet: the raw archive object. The fetch step writes these
 * S3 user metadata keys (lower-case, as S3 returns them) when it archives a file; the process step
 * reads them back to find the ledger unit and the server's size and time.
 */
export const ARCHIVE_METADATA = {
  unit: 'smt-unit',
  remotePath: 'smt-remote-path',
  remoteSize: 'smt-remote-size',
  remoteModified: 'smt-remote-modified',
  protocol: 'smt-protocol',
} as const;
