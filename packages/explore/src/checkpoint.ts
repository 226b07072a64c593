/**
 * A threaded search's state at the end of a level, or part-way through one, in a file, so that a search of hours can
 * stop and go on later (as TLC's checkpoints do): the levels so far, the transitions, the findings (properties and
 * counts), the visited set as its 64-bit fingerprints, and the level waiting to be expanded (its packed traces and
 * fingerprints). Part-way through a level (version 5), also how far its expansion went (the chunk size and the chunks
 * merged, in the level's order) and the next level as found so far (its traces and fingerprints): the search goes on
 * from the next chunk, and finds what it would have found uninterrupted.
 * Written only once the visited set keeps fingerprints (a million states in 'auto' mode): a set of canonical forms
 * is gigabytes. The file is written whole to a temporary name and renamed, so a search stopped while writing leaves
 * the previous checkpoint; it is flushed to the disk (fsync) before the rename, so a machine that stops cannot leave
 * an empty file under the checkpoint's name.
 *
 * Layout (versions 3 to 5): a 4-byte little-endian length, the header as UTF-8 JSON, then the frontier's traces
 * (count · length bytes), its fingerprints (count · 2 words) and the visited pairs (visited · 2 words); in version 5
 * then the next level's traces and fingerprints so far (the same way); words little-endian, and last the SHA-256 of
 * everything before it (header included: an edited header is refused like damaged contents).
 *
 * A checkpoint is resumed by the build that wrote it: the file does not carry the model's code. It does carry the
 * world's action alphabet (a trace is a list of indices into it) and a probe of the model (`modelProbe`: every
 * state and outcome within two actions of the start), so a build whose actions, starting state or first two steps
 * differ is refused rather than replaying traces into other actions or other states. A change that shows only
 * deeper than two actions is not caught: resume with the build that wrote the file.
 */
import { constants as bufferConstants } from 'node:buffer';
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { dirname } from 'node:path';
import type { Contract } from '@gmemlab/core';
import type { PropertyCounts, PropertyOutcome } from './search.js';
import { PROPERTY_NAMES, type PropertyName } from './properties.js';
import type { WorldConfig } from './world.js';

/** A checkpoint file that cannot be used: not one, another search's, or a place it cannot be written. */
export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/**
 * Before a search starts: a checkpoint that does not exist yet must be writable where it is to go (a search of
 * hours should not fail at its first level's end).
 */
export function checkCheckpointPlace(file: string): void {
  // Checked for a file that exists too: a resumed search writes its next checkpoint beside it.
  try {
    accessSync(dirname(file), constants.W_OK);
  } catch {
    throw new CheckpointError(`${file}: its folder does not exist or cannot be written`);
  }
}

const FORMAT = 'gmemlab-explore-checkpoint';
/**
 * 5: a checkpoint part-way through a level (version 4 and the expansion so far); 4: the key without the fork
 * threshold (forks and replays give the same worlds); 3: the key's model probe (2, of the build before it, carried
 * the initial state's fingerprint instead; 1 had no checksum). This build writes 4 at a level's end (a build that
 * reads 4 resumes it) and 5 within a level, and reads 3 to 5 (a version-3 file's `forkFrom` is ignored); a file of
 * another version is refused by its version, and a build that reads only 3 names this one's files by their version
 * rather than by a missing fork threshold.
 */
const VERSION = 4;
const WITHIN_VERSION = 5;
const READS: readonly unknown[] = [3, 4, 5];
/** The SHA-256 at the end of the file. */
const DIGEST = 32;

/** What must match for a checkpoint to be resumed: the same search. */
export interface CheckpointKey {
  arch: string;
  contract: Contract;
  world: WorldConfig;
  /** From how many states on the visited set keeps fingerprints (0: from the start). */
  exactUpTo: number;
  /** The world's actions by id, in the order traces number them. */
  alphabet: readonly string[];
  /** The model near the start, as a digest: `modelProbe`. */
  probe: string;
}

/** A key field's meaning, for a message about a file written with another value of it. */
const KEY_FIELDS = {
  arch: 'architecture',
  contract: 'contract',
  exactUpTo: 'visited states as fingerprints',
} as const;

/** A key field's value as a message says it (exactUpTo: when the visited set turns to fingerprints). */
const keyValue = (field: keyof typeof KEY_FIELDS, value: unknown): string => {
  if (field !== 'exactUpTo') return JSON.stringify(value);
  if (value === 0) return 'from the start';
  if (value === Infinity || value === null) return 'never (--visited exact)';
  return `from ${JSON.stringify(value)} states on`;
};

export interface Checkpoint extends CheckpointKey {
  /** The level whose states wait in the frontier. */
  level: number;
  levels: number[];
  transitions: number;
  properties: Record<PropertyName, PropertyOutcome>;
  counts: PropertyCounts;
  fingerprintsFrom: number;
  frontier: PackedLevel;
  visited: Uint32Array;
  /** Part-way through the frontier's expansion (version 5): how far it went, and the next level found so far. */
  within?: Within;
}

/** A level's states as the search keeps them: `count` traces of `length` actions, and a fingerprint (2 words) each. */
export interface PackedLevel {
  length: number;
  count: number;
  traces: Uint8Array;
  prints: Uint32Array;
}

/** How far a level's expansion went: chunks of `chunk` states merged in order, `merged` of them, and what they found. */
export interface Within {
  chunk: number;
  merged: number;
  next: PackedLevel;
}

const littleEndian = endianness() === 'LE';

/** Words as little-endian bytes: the array's own memory on a little-endian host. */
const words = (array: Uint32Array): Buffer => {
  if (littleEndian) return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  const buffer = Buffer.alloc(array.length * 4);
  for (let i = 0; i < array.length; i++) buffer.writeUInt32LE(array[i]!, i * 4);
  return buffer;
};

const readWords = (buffer: Buffer, at: number, count: number): Uint32Array => {
  const out = new Uint32Array(count);
  if (littleEndian) new Uint8Array(out.buffer).set(buffer.subarray(at, at + count * 4));
  else for (let i = 0; i < count; i++) out[i] = buffer.readUInt32LE(at + i * 4);
  return out;
};

/** A level's packed traces and fingerprints as the parts of a file (the arrays may be longer than the level). */
const packed = (level: PackedLevel): Buffer[] => [
  Buffer.from(level.traces.buffer, level.traces.byteOffset, level.count * level.length),
  words(level.prints.subarray(0, level.count * 2)),
];

/** Write a checkpoint (whole, under a temporary name, then renamed): the bytes written. */
export function writeCheckpoint(file: string, checkpoint: Checkpoint): number {
  const { frontier, visited, within, ...rest } = checkpoint;
  const header = Buffer.from(
    JSON.stringify({
      format: FORMAT,
      version: within ? WITHIN_VERSION : VERSION,
      ...rest,
      frontier: { length: frontier.length, count: frontier.count },
      visited: visited.length / 2,
      ...(within
        ? {
            within: {
              chunk: within.chunk,
              merged: within.merged,
              next: { length: within.next.length, count: within.next.count },
            },
          }
        : {}),
    }),
    'utf8',
  );
  const size = Buffer.alloc(4);
  size.writeUInt32LE(header.length, 0);
  const parts = [size, header, ...packed(frontier), words(visited), ...(within ? packed(within.next) : [])];
  parts.push(sha256(...parts));
  // One temporary name per process: two searches given one file do not write into each other's half-made copy.
  const temporary = `${file}.${process.pid}.partial`;
  const fd = openSync(temporary, 'w');
  try {
    try {
      for (const part of parts)
        for (let at = 0; at < part.length;) at += writeSync(fd, part, at, Math.min(part.length - at, CHUNK));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
    return parts.reduce((sum, part) => sum + part.length, 0);
  } catch (error) {
    // A write, a flush or the rename that fails (a full disk, the checkpoint's name taken by a folder) leaves no
    // temporary file behind: the error is the search's, the previous checkpoint stays.
    try {
      unlinkSync(temporary);
    } catch {
      // Already gone: the error above is the one to report.
    }
    throw error;
  }
}

/** At most this many bytes per read or write call (a single call is limited to 2 GiB). */
const CHUNK = 1 << 30;

/** The SHA-256 of the buffers one after another, fed a gigabyte at a time (a single update is limited to 2 GiB). */
function sha256(...parts: Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) for (let at = 0; at < part.length; at += CHUNK) hash.update(part.subarray(at, at + CHUNK));
  return hash.digest();
}

/**
 * The whole file in one buffer, read a gigabyte at a time: readFileSync refuses files over 2 GiB, and a checkpoint
 * of a search of tens of millions of states can pass that (a buffer holds up to buffer.constants.MAX_LENGTH).
 */
function readWhole(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > bufferConstants.MAX_LENGTH)
      throw new CheckpointError(`${file}: ${size} bytes, more than this Node.js can hold in one buffer`);
    const buffer = Buffer.allocUnsafe(size);
    let at = 0;
    while (at < size) {
      const read = readSync(fd, buffer, at, Math.min(size - at, CHUNK), at);
      if (read === 0) break;
      at += read;
    }
    return at === size ? buffer : buffer.subarray(0, at);
  } finally {
    closeSync(fd);
  }
}

/** Read a checkpoint; an Error naming what is wrong when the file is not one, or is not this search's. */
export function readCheckpoint(file: string, key: CheckpointKey): Checkpoint {
  let buffer: Buffer;
  try {
    buffer = readWhole(file);
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const fail = (why: string): never => {
    throw new CheckpointError(`${file}: not a checkpoint of this search: ${why}`);
  };
  if (buffer.length < 4 + DIGEST) fail('too short');
  const headerLength = buffer.readUInt32LE(0);
  if (4 + headerLength + DIGEST > buffer.length) fail('truncated header');
  const end = buffer.length - DIGEST;
  let header: Record<string, unknown> | undefined;
  try {
    header = JSON.parse(buffer.subarray(4, 4 + headerLength).toString('utf8')) as Record<string, unknown>;
  } catch {
    // Damaged, or not a checkpoint: the checksum below says which.
  }
  // A checkpoint of another format version (version 1 had no checksum) is named as such, not as damaged.
  if (header?.format === FORMAT && !READS.includes(header.version))
    fail(
      `written in format version ${String(header.version)}, this build reads versions ${READS.slice(0, -1).join(', ')} and ${String(READS.at(-1))} ` +
        '(resume it with the build that wrote it)',
    );
  // The whole file's digest, before any field of the header is trusted.
  if (!sha256(buffer.subarray(0, end)).equals(buffer.subarray(end)))
    fail('its contents do not match their checksum (a damaged file)');
  if (header === undefined || header === null || typeof header !== 'object') return fail('its header is not JSON');
  if (header.format !== FORMAT) fail(`format ${JSON.stringify(header.format)}`);
  // Not the fork threshold: forks and replays give the same worlds (search-fork.test.ts), so a file written with
  // one resumes with another (an older file's `forkFrom` is ignored).
  for (const field of ['arch', 'contract', 'exactUpTo'] as const)
    if (header[field] !== key[field])
      fail(`${KEY_FIELDS[field]} ${keyValue(field, header[field])}, this search's ${keyValue(field, key[field])}`);
  if (JSON.stringify(header.world) !== JSON.stringify(key.world))
    fail(`world ${JSON.stringify(header.world)}, this search's ${JSON.stringify(key.world)}`);
  // Traces are indices into the alphabet: another list of actions would replay them as other actions.
  if (JSON.stringify(header.alphabet) !== JSON.stringify(key.alphabet))
    fail("its actions are not this build's (the file was written by another version of the model)");
  if (header.probe !== key.probe)
    fail(
      "its model is not this build's: the states or outcomes within two actions of the start differ " +
        '(the file was written by another version of the model)',
    );
  const frontier = header.frontier as { length: number; count: number };
  const visitedCount = header.visited as number;
  // Part-way through a level: in version 5 only, and always there.
  const within = header.within as
    { chunk: number; merged: number; next: { length: number; count: number } } | undefined;
  if ((header.version === WITHIN_VERSION) !== (within !== undefined)) fail('its version and its fields disagree');
  const counts = [
    frontier?.length,
    frontier?.count,
    visitedCount,
    header.level,
    header.transitions,
    header.fingerprintsFrom,
    ...(within !== undefined ? [within?.chunk, within?.merged, within?.next?.length, within?.next?.count] : []),
  ];
  if (!counts.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) fail('bad counts in its header');
  // The header's fields must agree with one another (a file edited by hand, or written by something else).
  const level = header.level as number;
  const levels = header.levels as unknown;
  if (
    !Array.isArray(levels) ||
    levels.length !== level + 1 ||
    !levels.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) ||
    levels[level] !== frontier.count ||
    frontier.count === 0 ||
    frontier.length !== level ||
    (levels as number[]).reduce((a, b) => a + b, 0) + (within?.next.count ?? 0) !== visitedCount ||
    (header.fingerprintsFrom as number) > visitedCount
  )
    fail('its levels, frontier and visited count disagree');
  // A level's expansion written part-way: at least one chunk merged and one left, the next level one action longer.
  if (
    within !== undefined &&
    (within.chunk < 1 ||
      within.merged < 1 ||
      within.merged * within.chunk >= frontier.count ||
      within.next.length !== level + 1)
  )
    fail("its level's expansion so far disagrees with its frontier");
  const properties = header.properties as Record<string, Record<string, unknown>> | null;
  const tallies = header.counts as Record<string, { premise?: unknown; violated?: unknown }> | null;
  // A trace is a list of action ids (the report replays it); a violation has one exactly when the property does not
  // hold, a witness exactly when it is not vacuous (as the search records them).
  const actions = new Set(key.alphabet);
  const traceOf = (ids: unknown, present: boolean): boolean =>
    present ? Array.isArray(ids) && ids.every((id) => typeof id === 'string' && actions.has(id)) : ids === undefined;
  const count = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0;
  for (const name of PROPERTY_NAMES) {
    const p = properties?.[name];
    const c = tallies?.[name];
    if (typeof p?.holds !== 'boolean' || typeof p.vacuous !== 'boolean') fail(`no result for ${name}`);
    if (
      !traceOf(p!.trace, !p!.holds) ||
      !traceOf(p!.witness, !p!.vacuous) ||
      !['string', 'undefined'].includes(typeof p!.traceNote) ||
      !['string', 'undefined'].includes(typeof p!.witnessNote)
    )
      fail(`a bad trace or witness for ${name}`);
    if (!count(c?.premise) || !count(c?.violated)) fail(`no counts for ${name}`);
  }
  let at = 4 + headerLength;
  const bytesOf = (level: { length: number; count: number }) => level.count * (level.length + 8);
  if (end !== at + bytesOf(frontier) + visitedCount * 8 + (within ? bytesOf(within.next) : 0))
    fail('its size does not match its header');
  // A level's traces and fingerprints at `at` (`at` moves past them). Each step of a trace is an index into the
  // alphabet: one past it would be replayed as no action.
  const readLevel = ({ length, count }: { length: number; count: number }, which: string): PackedLevel => {
    const tracesLength = count * length;
    for (let i = at; i < at + tracesLength; i++)
      if (buffer[i]! >= key.alphabet.length) fail(`a ${which} trace names action ${buffer[i]!}, past its alphabet`);
    const traces = new Uint8Array(Math.max(1, length) * Math.max(64, count));
    traces.set(buffer.subarray(at, at + tracesLength));
    at += tracesLength;
    const prints = readWords(buffer, at, count * 2);
    at += count * 8;
    return { length, count, traces, prints };
  };
  const frontierLevel = readLevel(frontier, 'frontier');
  const visited = readWords(buffer, at, visitedCount * 2);
  at += visitedCount * 8;
  return {
    ...key,
    level: header.level as number,
    levels: header.levels as number[],
    transitions: header.transitions as number,
    properties: header.properties as Checkpoint['properties'],
    counts: header.counts as Checkpoint['counts'],
    fingerprintsFrom: header.fingerprintsFrom as number,
    frontier: frontierLevel,
    visited,
    ...(within !== undefined
      ? { within: { chunk: within.chunk, merged: within.merged, next: readLevel(within.next, 'next level') } }
      : {}),
  };
}
