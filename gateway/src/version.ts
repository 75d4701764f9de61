/** The agent's version: set by the bundler (gateway/packaging/build.ts); running from the repository it is `dev`. */
export const GATEWAY_VERSION: string = process.env.METERBRIDGE_GATEWAY_VERSION ?? 'dev';
