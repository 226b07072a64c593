/**
 * `gmemlab new-backend <dir>`: a complete third-party backend package from the core README's template, ready for
 * `npm install && npm test && npm pack` and for gmemlab.config.json. What it writes is what a stranger needs and
 * nothing the demo itself uses: an ESM package whose only gmemlab import is `@gmemlab/core` (a peer dependency with
 * the floor the template needs), TypeScript built by tsup with a NodeNext tsconfig (without it `tsup --dts` fails
 * with TS2792), the conformance kit as its test, and a README with a sources section.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from './cli-support.js';

/**
 * The lowest core the template needs: the backend skeleton it is written with (`defineOptions`, `variantId`,
 * `ruleTable`, `whenHardwarePrivate`, `archBackend`), `PageAccessContext.hardware`, `rules` with `evidence`, and
 * `defineBackendFactory`'s `variants` all come with @gmemlab/core 0.2 (the release after 0.1.0).
 */
export const TEMPLATE_CORE_RANGE = '>=0.2.0 <1.0.0';
/** The toolchain the scaffold pins: the versions gmemlab itself builds with on Node 20 (TOOLCHAIN: tsup 9 needs Node 22). */
const TOOLCHAIN = { tsup: '8.5.1', typescript: '5.9.3', vitest: '~4.1.0' } as const;

/** A backend id: a letter, then letters and digits, with single '-' between them; at least 2 characters. */
const ID = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const ID_RULE =
  "at least 2 characters: lowercase letters and digits, starting with a letter, single '-' between them (not at the end); ':' is for variants";
/** The ids of the backends gmemlab always loads: a package with one of them can never load beside the built-in. */
const BUILTIN_IDS: Record<string, string> = {
  tdx: '@gmemlab/tdx',
  'sev-snp': '@gmemlab/sev-snp',
  'arm-cca': '@gmemlab/arm-cca',
  pkvm: '@gmemlab/pkvm',
  'sw-protected': '@gmemlab/core',
};

/**
 * Every name src/index.ts and its test declare or import at the top level besides the derived ones, and the words
 * JavaScript reserves (strict mode and modules included): the export named after the id must be none of them.
 */
export const TEMPLATE_NAMES: ReadonlySet<string> = new Set([
  // imported from @gmemlab/core, @gmemlab/core/testing and vitest
  'AccessVerdict',
  'ArchBackend',
  'OptionSpecsOf',
  'archBackend',
  'defineBackendFactory',
  'defineOptions',
  'oneOf',
  'PAGE_SIZE',
  'ruleTable',
  'variantId',
  'whenHardwarePrivate',
  'describeFactoryConformance',
  'describe',
  'it',
  // the template's own
  'blocked',
  'readOptions',
  // reserved words and strict-mode/module restricted names
  'break',
  'case',
  'catch',
  'class',
  'const',
  'continue',
  'debugger',
  'default',
  'delete',
  'do',
  'else',
  'enum',
  'export',
  'extends',
  'false',
  'finally',
  'for',
  'function',
  'if',
  'import',
  'in',
  'instanceof',
  'new',
  'null',
  'return',
  'super',
  'switch',
  'this',
  'throw',
  'true',
  'try',
  'typeof',
  'var',
  'void',
  'while',
  'with',
  'yield',
  'let',
  'static',
  'implements',
  'interface',
  'package',
  'private',
  'protected',
  'public',
  'await',
  'arguments',
  'eval',
  'undefined',
  'NaN',
  'Infinity',
  'async',
  'of',
  'get',
  'set',
  'type',
  'as',
  'from',
  'satisfies',
  'declare',
  'module',
  'namespace',
]);

/** The names the template derives from an id; `factory` gets a 'Backend' suffix when the plain camelCase name is taken. */
export function templateNames(id: string): { factory: string; create: string; optionsType: string; rules: string } {
  const camel = id.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const pascal = `${camel[0]!.toUpperCase()}${camel.slice(1)}`;
  return {
    factory: TEMPLATE_NAMES.has(camel) ? `${camel}Backend` : camel,
    create: `create${pascal}Backend`,
    optionsType: `${pascal}Options`,
    rules: `${camel}Rules`,
  };
}
const NPM_NAME = /^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/;

/** The files of a new backend package, by path relative to its folder. */
export function backendFiles(options: { id: string; packageName: string }): Record<string, string> {
  const { id, packageName } = options;
  const { factory, create, optionsType, rules } = templateNames(id);
  const pkg = {
    name: packageName,
    version: '0.1.0',
    description: `The ${id} architecture for gmemlab: what it does on guest_memfd conversion, truncation and stale DMA, as an ArchBackend.`,
    license: 'MIT',
    type: 'module',
    sideEffects: false,
    keywords: ['gmemlab', 'guest_memfd', 'kvm', 'confidential-computing', id],
    files: ['dist', 'README.md', 'CHANGELOG.md', 'LICENSE'],
    main: './dist/index.js',
    types: './dist/index.d.ts',
    exports: {
      '.': { types: './dist/index.d.ts', import: './dist/index.js', default: './dist/index.js' },
      './package.json': './package.json',
    },
    engines: { node: '>=20.19' },
    scripts: {
      build: 'tsup',
      typecheck: 'tsc --noEmit',
      test: 'tsc --noEmit && vitest run',
      prepack: 'tsup',
    },
    peerDependencies: { '@gmemlab/core': TEMPLATE_CORE_RANGE },
    devDependencies: { '@gmemlab/core': TEMPLATE_CORE_RANGE, ...TOOLCHAIN },
  };
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2023'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      declaration: true,
      sourceMap: true,
      skipLibCheck: true,
      verbatimModuleSyntax: true,
      outDir: 'dist',
      rootDir: 'src',
      types: [],
    },
    include: ['src'],
  };
  const index = `/**
 * ${id} as a gmemlab ArchBackend (specificationVersion 'v1'), from the template in @gmemlab/core's README.
 *
 * Sources: every rule below names its source tags, as the comments beside the hooks do, and quotes in
 * \`evidence\` the passage of each source that supports it. List the tags in the README's Sources section.
 *   [S1] (replace: the specification, kernel code or mailing-list message, with its version or commit)
 * Where the sources disagree or say nothing, say so in the rule and make each reading an option.
 */
import type { AccessVerdict, ArchBackend, OptionSpecsOf } from '@gmemlab/core';
import { archBackend, defineBackendFactory, defineOptions, oneOf, PAGE_SIZE, ruleTable, variantId, whenHardwarePrivate } from '@gmemlab/core';

export interface ${optionsType} {
  /** A variant gets its own id, '${id}:<variant>'. Remove it if the architecture has none. */
  variant?: 'io';
}

/** The options' values; a value not listed throws a BackendOptionError (a TypeError) naming the option. */
const readOptions = defineOptions('${packageName}', { variant: oneOf(['io']) } satisfies OptionSpecsOf<${optionsType}>);

/**
 * Decide by the hardware state of the page (what firmware enforces), not KVM's attribute alone: whenHardwarePrivate
 * allows any access to a page the hardware does not hold as private.
 */
const blocked = whenHardwarePrivate((): AccessVerdict => {
  // [S1] replace: what the hardware does when a device or the host touches a private page.
  return { allow: false, fault: 'contained', fatal: false, logged: true, mechanism: '${id}: the access to a private page is blocked' };
});

/** The rules in words, one row each; \`when\` names the settings a row holds for (no \`when\`: every instance). */
const ${rules} = ruleTable<{ io: boolean }>([
  { when: { io: true }, topic: 'variant', rule: 'Device assignment: assigned devices reach private memory through the trusted path.', source: '[S1]', evidence: [{ tag: 'S1', quote: '(replace: the passage of S1 that says this)' }] },
  { topic: 'conversion policy', rule: "'tolerate' both ways: the hardware blocks DMA to private pages.", source: '[S1]', evidence: [{ tag: 'S1', quote: '(replace)' }] },
  { topic: 'device access to private', rule: 'Blocked, not fatal, logged.', source: '[S1]', evidence: [{ tag: 'S1', quote: '(replace)' }] },
  { topic: 'host access to private', rule: 'Blocked, not fatal, logged.', source: '[S1]', evidence: [{ tag: 'S1', quote: '(replace)' }] },
  { topic: 'contents', rule: 'Zeroed on conversion to shared; kept on conversion to private.', source: '[S1]', evidence: [{ tag: 'S1', quote: '(replace)' }] },
]);

export function ${create}(options: ${optionsType} = {}): ArchBackend {
  const { variant } = readOptions(options);
  return archBackend({
    id: variantId('${id}', [variant]),
    name: '${id}',
    pageSizes: [PAGE_SIZE],
    conversionPolicy: () => 'tolerate', // or 'revoke' / 'refuse' / 'split', per context.to [S1]
    deviceAccess: blocked,
    hostKernelAccess: blocked,
    deviceMayReach: () => true, // false where the hardware does not block DMA [S1]
    mapsPrivatePages: false,
    contentsOnConversion: ({ to }) => (to === 'shared' ? 'zero' : 'keep'), // [S1]
    privateEntry: ({ pages }) => [{ step: 'page convert', count: pages }], // named firmware steps, counts only [S1]
    removalPipeline: ({ pages }) => [{ step: 'page reclaim', count: pages }], // [S1]
    rules: ${rules}.select({ io: variant === 'io' }),
  });
}

// A factory that is also the ready backend: \`${factory}\` as it is, or \`${factory}({ variant: 'io' })\`. The second
// argument publishes the variants by the key their id ends with: \`${factory}.variants.io\` builds '${id}:io'.
export const ${factory} = defineBackendFactory(${create}, { io: { variant: 'io' } });
export default ${factory};
`;
  const test = `// The variant contract, then @gmemlab/core's conformance kit on '${id}' and on every published variant.
import { describeFactoryConformance } from '@gmemlab/core/testing';
import { describe, it } from 'vitest';
import ${factory} from './index.js';

describeFactoryConformance(${factory}, { describe, it });
`;
  const tsup = `import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // The peer dependency stays an import: the backend must run on the user's one core.
  external: ['@gmemlab/core'],
});
`;
  const readme = `# ${packageName}

The ${id} architecture for [gmemlab](https://www.npmjs.com/package/@gmemlab/demo): what it does on guest_memfd
conversion, truncation and stale DMA, as an \`ArchBackend\` ('v1') of \`@gmemlab/core\`.

## Use

\`\`\`sh
npm install @gmemlab/demo ${packageName}
echo '{ "backends": ["${packageName}"] }' > gmemlab.config.json
npx gmemlab backends          # lists '${id}' and '${id}:io'
npx gmemlab compare --arch ${id},tdx
\`\`\`

Install the package into the project first: gmemlab resolves a config entry from the config file's folder (then
the current folder), so an entry for a package not installed there fails. The built-in scenarios' expectations
name the architectures they are for, so for '${id}' \`compare --arch ${id}\` reports what happened on each design;
only an expectation a scenario states for every architecture still applies, and a FAIL there (exit 1) means '${id}'
does not do what that scenario assumes of all of them.

From code: \`import ${factory} from '${packageName}'\` is the ready backend; \`${factory}({ variant: 'io' })\` is '${id}:io'.

## Rules

Each rule is in \`backend.rules\` with its source tags and, in \`evidence\`, the passage of each source that says it
(\`gmemlab explain ${id}\` prints them).

| topic | rule | source |
|---|---|---|
| conversion policy | 'tolerate' both ways | [S1] |
| device access to private | blocked, not fatal, logged | [S1] |
| host access to private | blocked, not fatal, logged | [S1] |
| contents | zeroed on conversion to shared, kept to private | [S1] |

## Sources

- [S1] (replace: the document, section and version, or the code at a commit, this backend follows)

Where the sources disagree or say nothing, the rule says so, and each reading is an option.

## Develop

\`npm test\` typechecks and runs @gmemlab/core's conformance kit (\`@gmemlab/core/testing\`) on the backend and
each variant. \`npm pack\` builds \`dist/\` (tsup) and packs it. The peer range \`${TEMPLATE_CORE_RANGE}\` is the
lowest core the template needs (the backend skeleton, \`context.hardware\`, \`rules\`, \`variants\`: core 0.2); gmemlab refuses to load a
backend whose peer range does not accept the core it runs on.
`;
  const changelog = `# ${packageName}\n\n## 0.1.0\n\n- First release: the ${id} ArchBackend.\n`;
  const license = `MIT License\n\nCopyright (c) ${new Date().getUTCFullYear()} the ${packageName} authors\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software and associated documentation files (the "Software"), to deal\nin the Software without restriction, including without limitation the rights\nto use, copy, modify, merge, publish, distribute, sublicense, and/or sell\ncopies of the Software, and to permit persons to whom the Software is\nfurnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all\ncopies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\nIMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\nFITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\nAUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\nLIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\nOUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\nSOFTWARE.\n`;
  return {
    'package.json': `${JSON.stringify(pkg, null, 2)}\n`,
    'tsconfig.json': `${JSON.stringify(tsconfig, null, 2)}\n`,
    'tsup.config.ts': tsup,
    'src/index.ts': index,
    [`src/${id}.test.ts`]: test,
    'README.md': readme,
    'CHANGELOG.md': changelog,
    LICENSE: license,
    '.gitignore': 'node_modules\ndist\n*.tgz\n',
  };
}

/** Write a new backend package into `dir` (absent or empty); returns the files written. */
export function writeBackend(
  dir: string,
  options: { id?: string; packageName?: string } = {},
): { dir: string; id: string; packageName: string; files: string[] } {
  const target = resolve(dir);
  const base = basename(target);
  const id =
    options.id ??
    base
      .replace(/^gmemlab-(backend-)?/, '')
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '');
  if (id.length < 2 || !ID.test(id)) throw new UsageError(`--id: '${id}' is not a backend id (${ID_RULE})`);
  const builtin = BUILTIN_IDS[id];
  if (builtin !== undefined)
    throw new UsageError(
      `--id: '${id}' is the id of the built-in ${builtin}, which gmemlab always loads: a package with it could never load beside it (the loader reports the clash); pick another id`,
    );
  const packageName = options.packageName ?? base.toLowerCase();
  if (!NPM_NAME.test(packageName)) throw new UsageError(`--package: '${packageName}' is not an npm package name`);
  if (existsSync(target) && !statSync(target).isDirectory())
    throw new UsageError(`${dir}: is a file, not a folder (nothing written)`);
  if (existsSync(target) && readdirSync(target).length > 0)
    throw new UsageError(`${dir}: the folder exists and is not empty (nothing written)`);
  const files = backendFiles({ id, packageName });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(target, path, '..'), { recursive: true });
    writeFileSync(join(target, path), text);
  }
  return { dir: target, id, packageName, files: Object.keys(files) };
}

export function registerNewBackend(cli: Command): void {
  cli
    .command('new-backend')
    .description('write a new backend package (an ArchBackend for another architecture) from the core template')
    .argument('<dir>', 'the folder to create (absent or empty)')
    .option('--id <id>', "the backend id (default: from the folder's name)")
    .option('--package <name>', "the npm package name (default: the folder's name)")
    .action((dir: string, options: { id?: string; package?: string }) => {
      const written = writeBackend(dir, {
        ...(options.id !== undefined ? { id: options.id } : {}),
        ...(options.package !== undefined ? { packageName: options.package } : {}),
      });
      process.stdout.write(
        `${written.packageName}: backend '${written.id}' in ${written.dir}\n` +
          `  ${written.files.join(', ')}\n` +
          `next: cd ${dir} && npm install && npm test && npm pack; then, in your project, npm install the package (or the .tgz) and list '${written.packageName}' in its gmemlab.config.json\n` +
          `  (the built-in scenarios' expectations name their architectures: compare --arch ${written.id} reports what happened, except where a scenario expects something of every architecture)\n`,
      );
    });
}
