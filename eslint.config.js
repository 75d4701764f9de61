// ESLint (flat config) with typescript-eslint, and the import boundaries that keep the folders
// saying what ships (docs/design.md §2): `npm run lint`. Formatting is Prettier's job
// (.prettierrc.json), so no stylistic rules here.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Import specifiers that reach a top-level folder, at any depth (`../local/x.ts`, `../../../local/x.ts`). */
const folder = (name) => [`**/${name}`, `**/${name}/**`];
const restricted = (...groups) => ['error', { patterns: groups }];

export const boundaries = [
  {
    // What deploys: the handlers and their core never reach local stand-ins, the CLI, tests, the
    // gateway or the CDK app.
    files: ['lambdas/**/*.ts'],
    rules: {
      'no-restricted-imports': restricted({
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
      }),
    },
  },
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
  ...boundaries,
);
