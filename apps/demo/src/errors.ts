/**
 * The one kind of error the CLI reports as the user's: a usage or input problem (a bad option, a scenario file, a
 * backend or config, a scenario the kernel oracle cannot run). `gmemlab` prints its message as one line on stderr
 * and exits 2; anything else is an internal error (exit 3). It lives apart from the modules that throw it so the
 * CLI can recognise one without loading them.
 */
export class InputError extends Error {}
