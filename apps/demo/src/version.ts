import { createRequire } from 'node:module';

/** This package's version, from its package.json (one level up from dist/ and src/). */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
