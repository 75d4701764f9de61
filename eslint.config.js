// ESLint (flat config) with typescript-eslint, and the import boundaries that keep the folders
// saying what ships (docs/design.md §2): `npm run lint`. Formatting is Prettier's job
// (.prettierrc.json), so no stylistic rules here.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Import specifiers that reach a top-level folder, at any depth (`../local/x.ts`, `../../../local/x.ts`). */
const folder = (name) => [`**/${name}`, `**/${name}/**`];
const restricted = (...groups) => ['error', { patterns: groups }];

/** What deploys (lambdas/) never reaches local stand-ins, the CLI, tests, the gateway or the CDK app. */
const deployedOnly = {
  group: [
    ...folder('local'),
    ...folder('bin'),
    ...folder('test'),
    ...folder('gateway'),
    ...folder('lib'),
    'aws-cdk-lib',
    'aws-cdk-lib/**',
    'constructs',
  ],
  message: 'lambdas/ is what deploys: it may import only lambdas/ and shared/ (docs/design.md §2).',
};

/** An SMT stage (lambdas/core/smt/<stage>/) reaches the other stages only through the top level of smt/ (process.ts joins them). */
const smtStage = (stage) => ({
  files: [`lambdas/core/smt/${stage}/**/*.ts`],
  rules: {
    'no-restricted-imports': restricted(deployedOnly, {
      group: ['transport', 'pgp', 'parse']
        .filter((other) => other !== stage)
        .flatMap((other) => [`../${other}/**`])
        .concat(['../process.ts']),
      message: `lambdas/core/smt/${stage}/ is one stage: it may use smt/'s shared constants (model.ts, archive-metadata.ts) but not another stage or process.ts.`,
    }),
  },
});

export const boundaries = [
  {
    files: ['lambdas/**/*.ts'],
    rules: { 'no-restricted-imports': restricted(deployedOnly) },
  },
  // Later entries replace the rule for their files, so each stage restates deployedOnly.
  ...['transport', 'pgp', 'parse'].map(smtStage),
  {
    // Shared by the cloud and the field agent: depends on nothing of either.
    files: ['shared/**/*.ts'],
    rules: {
      'no-restricted-imports': restricted({
        group: [
          ...folder('lambdas'),
          ...folder('local'),
          ...folder('bin'),
          ...folder('lib'),
          ...folder('test'),
          ...folder('gateway'),
          ...folder('bench'),
        ],
        message: 'shared/ is used by the cloud and the gateway alike: it may import only shared/ and packages.',
      }),
    },
  },
  {
    // The field agent ships on its own: its code and the shared contract, nothing of the cloud.
    files: ['gateway/**/*.ts'],
    rules: {
      'no-restricted-imports': restricted({
        group: ['lambdas', 'local', 'bin', 'lib', 'test', 'bench'].flatMap((name) => [`../../${name}/**`, `../../../${name}/**`]),
        message: 'gateway/ may import only gateway/ and shared/.',
      }),
    },
  },
  {
    // The CDK app imports no runtime code, only the constants and contracts it configures.
    files: ['lib/**/*.ts', 'bin/app.ts'],
    rules: {
      'no-restricted-imports': restricted({
        // Matching files only (`*.ts`): a pattern that matched a folder would keep the exceptions
        // below from re-including anything in it, as in .gitignore.
        group: [
          ...['lambdas', 'shared', 'local', 'gateway', 'test', 'bin/commands', 'bin/operator'].map((name) => `**/${name}/**/*.ts`),
          // Contracts the stack configures: metric names, table keys, unit-of-work times, the telemetry topic, READY paths and handshake options, the query API's parameters.
          '!**/lambdas/core/metric-catalog.ts',
          '!**/lambdas/core/tables.ts',
          '!**/lambdas/core/work-units.ts',
          '!**/lambdas/core/ready/api-gateway.ts',
          '!**/lambdas/core/query/api.ts',
          '!**/lambdas/core/feed/lake-schema.ts',
          '!**/lambdas/core/ready/handshake.ts',
          '!**/shared/telemetry.ts',
        ],
        message: 'lib/ (the CDK app) may import only the constants and contracts it configures (see the allow list in eslint.config.js).',
      }),
    },
  },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'cdk.out/**', 'bench/out/**', 'coverage/**', '.local/**', '.tools/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Off: the codebase escapes `-` in character classes on purpose (`[A-Za-z0-9._:\-]`), so it reads
      // as a literal wherever it sits; the escape is harmless and removing it is churn in shared patterns.
      'no-useless-escape': 'off',
      // A `let` assigned once after a closure that reads it (a test's late-bound target) cannot be a const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Unused names are errors, except the deliberate `_`-prefixed ones (handler signatures, destructured rests).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Plain JavaScript that runs on Node (the artifact stage's bundle runner, this config): Node's globals.
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setImmediate: 'readonly',
      },
    },
  },
  {
    // Functions a reader can hold in their head: split along the seams the code marks. Tests and
    // the bench are exempt (a test's body is its scenario); so are the parsers' hot loops, where
    // one pass over the input is the point (none needs it today).
    files: ['lambdas/**/*.ts', 'shared/**/*.ts', 'lib/**/*.ts', 'local/**/*.ts', 'bin/**/*.ts', 'gateway/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 100, skipBlankLines: true, skipComments: true }] },
  },

  {
    // local/page/ is the local mode's page: browser JavaScript served as is (no build step), so the browser's globals.
    files: ['local/page/**/*.js'],
    languageOptions: {
      globals: {
        CSS: 'readonly',
        document: 'readonly',
        fetch: 'readonly',
        Intl: 'readonly',
        URLSearchParams: 'readonly',
        setInterval: 'readonly',
      },
    },
  },
  ...boundaries,
);
