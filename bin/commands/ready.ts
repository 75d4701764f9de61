/**
 * `meterbridge ready subscribe|list|unsubscribe`: webhook subscriptions on Kamstrup READY API Access.
 *
 * Credentials never come from the command line (where shell history and `ps` would keep them):
 * either `--secret-id` names the Secrets Manager secret the webhook uses (the stack output
 * ReadySecretArn, JSON {tenantId, clientId, clientSecret}), or the environment holds
 * READY_TENANT_ID, READY_CLIENT_ID and READY_CLIENT_SECRET. The work is in
 * lambdas/core/ready/{oauth,subscriptions}.ts.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { azureAdTokenUrl, TokenProvider } from '../operator/ready-oauth.ts';
import { SecretsManagerCredentials } from '../../lambdas/core/ready/secret.ts';
import { DEFAULT_READY_API, ReadySubscriptionClient } from '../operator/ready-subscriptions.ts';
import { EXIT_OK, UsageError, cliLog, parseSubcommandLine, subcommandOf, type CliCommand, type CliIo } from './cli.ts';

const HELP = 'meterbridge ready --help';

const USAGE = `Usage:
  meterbridge ready subscribe --webhook-uri <url> --status-uri <url> [--resource <name>] [options]
  meterbridge ready list [--json] [options]
  meterbridge ready unsubscribe <subscriptionId> [options]

subscribe
  Creates a webhook subscription: READY then verifies both URLs with the handshake and posts
  data to --webhook-uri and status changes to --status-uri. Use the stack outputs
  ReadyWebhookUri and ReadyStatusUri.

  --webhook-uri <url>   data callback URL (WebhookUri)                          required
  --status-uri <url>    status callback URL (StatusUri)                         required
  --resource <name>     READY resource to subscribe to                  default meterReadings

list
  Lists the subscriptions of the client (id, status, resource, URLs).
  --json                machine-readable output

unsubscribe
  Deletes a subscription.

credentials (never as arguments)
  --secret-id <arn>     read {tenantId, clientId, clientSecret} from this Secrets Manager secret
                        (the stack output ReadySecretArn); otherwise from the environment:
                        READY_TENANT_ID, READY_CLIENT_ID, READY_CLIENT_SECRET

common
  --api-url <url>       READY API base URL      default $READY_API_URL or ${DEFAULT_READY_API}
                        (US tenants: https://api-us.ready.kamstrup.com)
  --token-url <url>     OAuth2 token endpoint   default $READY_TOKEN_URL or
                        https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
  --scope <scope>       OAuth2 scope            default $READY_SCOPE or <api-url>/.default
  --region <region>     AWS region for --secret-id                 default $AWS_REGION
  -h, --help            this text

Calls are retried on 429 and 5xx with exponential backoff and jitter, honouring Retry-After.
`;

const OPTIONS = {
  'secret-id': { type: 'string' },
  'api-url': { type: 'string' },
  'token-url': { type: 'string' },
  scope: { type: 'string' },
  region: { type: 'string' },
  // Hidden: Secrets Manager endpoint (tests).
  'endpoint-url': { type: 'string' },
} as const;

type CommonValues = { 'secret-id'?: string; 'api-url'?: string; 'token-url'?: string; scope?: string; region?: string; 'endpoint-url'?: string };

export const command: CliCommand = {
  async run(args, io) {
    const { subcommand, rest } = subcommandOf(args, 'ready', ['subscribe', 'list', 'unsubscribe'], HELP);
    if (subcommand === 'help') {
      io.out(USAGE);
      return EXIT_OK;
    }
    if (subcommand === 'subscribe') return subscribe(rest, io);
    if (subcommand === 'list') return list(rest, io);
    return unsubscribe(rest, io);
  },
};

/** Builds the API client from flags, environment or the secret; exported for tests. */
export async function readyClient(values: CommonValues, io: CliIo): Promise<ReadySubscriptionClient> {
  let tenantId = io.env.READY_TENANT_ID;
  let clientId = io.env.READY_CLIENT_ID;
  let clientSecret = io.env.READY_CLIENT_SECRET;
  if (values['secret-id']) {
    const region = values.region ?? io.env.AWS_REGION;
    const client = new SecretsManagerClient({
      ...(region ? { region } : {}),
      ...(values['endpoint-url'] ? { endpoint: values['endpoint-url'] } : {}),
    });
    try {
      const credentials = await new SecretsManagerCredentials({ client, secretId: values['secret-id'] }).get();
      ({ tenantId, clientId, clientSecret } = credentials);
    } finally {
      client.destroy();
    }
  }
  const missing = [!clientId && 'clientId (READY_CLIENT_ID)', !clientSecret && 'clientSecret (READY_CLIENT_SECRET)'].filter(Boolean);
  if (missing.length > 0) throw new UsageError(`READY credentials missing: ${missing.join(', ')}; use --secret-id or the environment`, HELP);
  const apiUrl = (values['api-url'] ?? io.env.READY_API_URL ?? DEFAULT_READY_API).replace(/\/+$/, '');
  const tokenUrl = values['token-url'] ?? io.env.READY_TOKEN_URL ?? (tenantId ? azureAdTokenUrl(tenantId) : undefined);
  if (!tokenUrl) throw new UsageError('no token endpoint: set the tenant id (READY_TENANT_ID or tenantId in the secret) or --token-url', HELP);
  const log = cliLog(io);
  const retry = {
    onRetry: (info: { attempt: number; delayMs: number; reason: string }) =>
      log.warn(`retrying after ${info.reason}`, { attempt: info.attempt, waitMs: info.delayMs }),
  };
  const tokens = new TokenProvider({
    credentials: { tokenUrl, clientId: clientId!, clientSecret: clientSecret!, scope: values.scope ?? io.env.READY_SCOPE ?? `${apiUrl}/.default` },
    retry,
  });
  return new ReadySubscriptionClient({ apiUrl, tokens, retry });
}

function requireUrl(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`subscribe needs ${flag} <url>`, HELP);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is not a URL`, HELP);
  }
  // READY calls back over the internet; a plain-HTTP callback would carry meter data in clear.
  const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost';
  if (url.protocol !== 'https:' && !loopback) throw new UsageError(`${flag}: must be an https:// URL`, HELP);
  return value;
}

async function subscribe(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    { ...OPTIONS, 'webhook-uri': { type: 'string' }, 'status-uri': { type: 'string' }, resource: { type: 'string', default: 'meterReadings' } },
    { count: 0, what: 'subscribe takes no positional arguments' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values } = parsed;
  const webhookUri = requireUrl(values['webhook-uri'], '--webhook-uri');
  const statusUri = requireUrl(values['status-uri'], '--status-uri');
  const client = await readyClient(values, io);
  const subscription = await client.subscribe({ resource: values.resource, webhookUri, statusUri });
  io.out(
    `subscribed ${subscription.subscriptionId} (${subscription.status ?? 'status unknown'}) to ${values.resource}\n  data    ${webhookUri}\n  status  ${statusUri}\n`,
  );
  return EXIT_OK;
}

async function list(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(
    args,
    HELP,
    { ...OPTIONS, json: { type: 'boolean', default: false } },
    { count: 0, what: 'list takes no positional arguments' },
  );
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values } = parsed;
  const subscriptions = await (await readyClient(values, io)).list();
  if (values.json) {
    io.out(`${JSON.stringify(subscriptions, null, 2)}\n`);
    return EXIT_OK;
  }
  if (subscriptions.length === 0) {
    io.out('no subscriptions\n');
    return EXIT_OK;
  }
  for (const s of subscriptions)
    io.out(`${s.subscriptionId}\t${s.status ?? '-'}\t${s.resource ?? '-'}\t${s.webhookUri ?? '-'}\t${s.statusUri ?? '-'}\n`);
  return EXIT_OK;
}

async function unsubscribe(args: string[], io: CliIo): Promise<number> {
  const parsed = parseSubcommandLine(args, HELP, OPTIONS, { count: 1, what: 'unsubscribe needs exactly one subscription id' });
  if (!parsed) {
    io.out(USAGE);
    return EXIT_OK;
  }
  const { values, positionals } = parsed;
  const id = positionals[0] as string;
  await (await readyClient(values, io)).unsubscribe(id);
  io.out(`unsubscribed ${id}\n`);
  return EXIT_OK;
}
