#!/usr/bin/env node
import { main } from './cli.js';

// A reader that stops early (`gmemlab compare | head`) closes the pipe: stop quietly, as a shell tool does.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
