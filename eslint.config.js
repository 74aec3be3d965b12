// ESLint flat config: typescript-eslint's type-aware recommended rules over src/, test/ and
// bench/ (`npm run lint`; `npm test` runs it through test/prepare.sh). Types come from the same
// tsconfig that typechecks each file: tsconfig.json for src/, tsconfig.test.json for tests and
// benches (projectService would only look for files named tsconfig.json, so both are named).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'src/gen/', 'node_modules/', '.cache/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    files: ['src/**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'vitest.config.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: ['**/*.ts'],
    rules: {
      // The two this config is for: a promise nobody awaits or handles, and a promise where a
      // plain value is expected (an async listener whose rejection would go unhandled).
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // Off: `async` without `await` is deliberate here (44 findings, none a bug): it turns a
      // synchronous throw into a rejection and implements interfaces that return promises.
      '@typescript-eslint/require-await': 'off',
      // The project's convention (tsc's noUnusedLocals agrees): `_name` marks an unused parameter,
      // and properties are destructured away with a rest sibling.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // A `let` assigned after a closure that reads it (undefined until then) is deliberate.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Rejecting with a caught value as is (type unknown) passes on what was thrown, as
      // only-throw-error allows for `throw`.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  // Plain JS config files (this one, .dependency-cruiser.cjs) have no tsconfig: no type-aware rules.
  { files: ['**/*.js', '**/*.cjs'], extends: [tseslint.configs.disableTypeChecked] },
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } } },
);
