/**
 * Typed documents for the tests, generated from the committed schema.graphql and the
 * operations in test/operations.graphql: `npm run codegen`. The output (test/gql/) is
 * committed and type-checked with everything else, so a schema change that breaks a client
 * operation fails `npm run typecheck`.
 */
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['test/operations.graphql'],
  // NodeNext resolution needs the extension on relative imports of the generated files.
  importExtension: '.js',
  generates: {
    'test/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: { useTypeImports: true, enumsAsTypes: true, scalars: { DateTime: 'string' } },
    },
  },
};

export default config;
