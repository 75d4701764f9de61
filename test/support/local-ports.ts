/** Free loopback ports for every port local mode uses, for tests that run it next to others. */
import { LOCAL_PORTS, type LocalPortName } from '../../local/defaults.ts';
import { freePort } from '../../local/dynamodb-local.ts';

export async function freeLocalPorts(): Promise<Record<LocalPortName, number>> {
  const ports = {} as Record<LocalPortName, number>;
  for (const name of Object.keys(LOCAL_PORTS) as LocalPortName[]) ports[name] = await freePort();
  // Gateways take modbus, modbus+1, ...: a base well away from the ephemeral range's busy start.
  ports.modbus = 20_000 + Math.floor(Math.random() * 10_000);
  return ports;
}
