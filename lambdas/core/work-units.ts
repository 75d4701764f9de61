/**
 * The kinds of units of work the ledger claims, with the two times that must agree for each: how
 * long the function doing one may run (lib/ sets the Lambda timeouts from here) and how long its
 * claim holds (the ledger reads it here). Plain constants: the CDK app imports them too.
 *
 * `smt-fetch`: a file on the SMT server (pull + archive + delete); `smt-file`: its archived copy
 * (decrypt + parse + store).
 */
export type UnitKind = 'iot-message' | 'smt-fetch' | 'smt-file' | 'ready-delivery';

/** The Lambda timeout of the function working on each kind of unit. */
export const FUNCTION_TIMEOUT_SECONDS: Record<UnitKind, number> = {
  'iot-message': 30,
  // Under API Gateway's 29 s integration limit, so a slow store answers 5xx from us, not a gateway timeout.
  'ready-delivery': 25,
  // A run drains the folders; SMT's files are at most tens of MB, so ten minutes is ample.
  'smt-fetch': 10 * 60,
  // The Lambda maximum: a 1 GB file decrypts and parses in well under it (bench/RESULTS.md).
  'smt-file': 15 * 60,
};

/**
 * How long a claim of each kind holds before another worker may re-take it: longer than the
 * slowest legitimate run of the function doing the unit, or two workers would process it at once;
 * not much longer, since a crashed run's unit waits this long before it is retried.
 */
export const LOCK_SECONDS: Record<UnitKind, number> = {
  // Four times the invocation limit; SQS shows the batch again only after the 180 s visibility timeout.
  'iot-message': 120,
  // Covers the 29 s API Gateway integration limit with room; shorter than a READY retry interval.
  'ready-delivery': 60,
  // The function timeout plus a minute: a claim of a run that died is re-taken by a later run.
  'smt-fetch': FUNCTION_TIMEOUT_SECONDS['smt-fetch'] + 60,
  'smt-file': FUNCTION_TIMEOUT_SECONDS['smt-file'] + 60,
};
