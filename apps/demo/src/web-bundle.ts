/**
 * The web view's browser bundle (dist/web/app.js, built by the second entry of tsup.config.ts), read at run time
 * from the installed package: `gmemlab serve` answers GET /app.js with it and html reports inline it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// From dist/*.js (the built package) the bundle sits in dist/web/; from src/ (tests run on sources) in ../dist/web/.
const CANDIDATES = [new URL('./web/app.js', import.meta.url), new URL('../dist/web/app.js', import.meta.url)];

let cached: string | undefined;

export function webBundle(): string {
  if (cached !== undefined) return cached;
  const found = CANDIDATES.map((u) => fileURLToPath(u)).find((f) => existsSync(f));
  if (found === undefined)
    throw new Error(`the web view is not built (no ${fileURLToPath(CANDIDATES[0]!)}); run the package's build`);
  cached = readFileSync(found, 'utf8');
  return cached;
}
