// Runs the TypeScript benchmark sources directly (as the tests do), type-stripped:
// `npm test` type-checks bench/ anyway.
process.env.TS_NODE_TRANSPILE_ONLY ??= '1';
await import('@tapjs/typescript/import');
