/**
 * Fixed loopback defaults of local mode (`npm start`), shared with the commands that talk to a
 * running local mode (`meterbridge readings query`). Every port can be overridden.
 */
export const LOCAL_PORTS = {
  dynamodb: 8000,
  mqtt: 8883,
  s3: 4569,
  ftps: 2121,
  sftp: 2222,
  ready: 3000,
  /** The query API (meters, readings as JSON, CSV, Green Button). */
  query: 3001,
  cloudwatch: 4582,
  /** First Modbus TCP port of the simulated meters (one server per gateway). */
  modbus: 5020,
} as const;

export type LocalPortName = keyof typeof LOCAL_PORTS;

export const LOCAL_TABLES = { readings: 'meterbridge-local-readings', ledger: 'meterbridge-local-ledger' } as const;

export const LOCAL_STAGE = 'local';
/** The readings feed's EventBridge bus on moto (the stack's is meterbridge-<stage>-readings). */
export const LOCAL_EVENT_BUS = 'meterbridge-local-readings';
/** The local data lake's bucket in s3rver (Parquet under readings/day=<day>/source=<source>/). */
export const LOCAL_LAKE_BUCKET = 'meterbridge-local-lake';
export const LOCAL_RULE_NAME = 'meterbridge_local_telemetry';
export const LOCAL_BLOCK_TIME_ZONE = 'America/Chicago';
/** Generated certificates, keys and spools go here (git-ignored). */
export const LOCAL_STATE_DIR = '.local';
