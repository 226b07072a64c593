/**
 * A threaded search's state at the end of a level, in a file, so that a search of hours can stop and go on later
 * (as TLC's checkpoints do): the levels so far, the transitions, the findings (properties and counts), the visited
 * set as its 64-bit fingerprints, and the level waiting to be expanded (its packed traces and fingerprints).
 * Written only once the visited set keeps fingerprints (a million states in 'auto' mode): a set of canonical forms
 * is gigabytes. The file is written whole to a temporary name and renamed, so a search stopped while writing leaves
 * the previous checkpoint.
 *
 * Layout: a 4-byte little-endian length, the header as UTF-8 JSON, then the frontier's traces (count · length
 * bytes), its fingerprints (count · 2 words) and the visited pairs (visited · 2 words), words little-endian.
 */
import { accessSync, constants, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
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
  if (existsSync(file)) return;
  try {
    accessSync(dirname(file), constants.W_OK);
  } catch {
    throw new CheckpointError(`${file}: its folder does not exist or cannot be written`);
  }
}

const FORMAT = 'gmemlab-explore-checkpoint';
const VERSION = 1;

/** What must match for a checkpoint to be resumed: the same search. */
export interface CheckpointKey {
  arch: string;
  contract: Contract;
  world: WorldConfig;
  forkFrom: number;
  /** From how many states on the visited set keeps fingerprints (0: from the start). */
  exactUpTo: number;
}

export interface Checkpoint extends CheckpointKey {
  /** The level whose states wait in the frontier. */
  level: number;
  levels: number[];
  transitions: number;
  properties: Record<PropertyName, PropertyOutcome>;
  counts: PropertyCounts;
  fingerprintsFrom: number;
  frontier: { length: number; count: number; traces: Uint8Array; prints: Uint32Array };
  visited: Uint32Array;
}

const words = (array: Uint32Array): Buffer => {
  const buffer = Buffer.alloc(array.length * 4);
  for (let i = 0; i < array.length; i++) buffer.writeUInt32LE(array[i]!, i * 4);
  return buffer;
};

const readWords = (buffer: Buffer, at: number, count: number): Uint32Array => {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = buffer.readUInt32LE(at + i * 4);
  return out;
};

export function writeCheckpoint(file: string, checkpoint: Checkpoint): void {
  const { frontier, visited, ...rest } = checkpoint;
  const traces = Buffer.from(frontier.traces.buffer, frontier.traces.byteOffset, frontier.count * frontier.length);
  const body = Buffer.concat([traces, words(frontier.prints.subarray(0, frontier.count * 2)), words(visited)]);
  const header = Buffer.from(
    JSON.stringify({
      format: FORMAT,
      version: VERSION,
      ...rest,
      frontier: { length: frontier.length, count: frontier.count },
      visited: visited.length / 2,
      sha256: createHash('sha256').update(body).digest('hex'),
    }),
    'utf8',
  );
  const size = Buffer.alloc(4);
  size.writeUInt32LE(header.length, 0);
  const temporary = `${file}.partial`;
  writeFileSync(temporary, Buffer.concat([size, header, body]));
  renameSync(temporary, file);
}

/** Read a checkpoint; an Error naming what is wrong when the file is not one, or is not this search's. */
export function readCheckpoint(file: string, key: CheckpointKey): Checkpoint {
  let buffer: Buffer;
  try {
    buffer = readFileSync(file);
  } catch (error) {
    throw new CheckpointError(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const fail = (why: string): never => {
    throw new CheckpointError(`${file}: not a checkpoint of this search: ${why}`);
  };
  if (buffer.length < 4) fail('too short');
  const headerLength = buffer.readUInt32LE(0);
  if (4 + headerLength > buffer.length) fail('truncated header');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buffer.subarray(4, 4 + headerLength).toString('utf8')) as Record<string, unknown>;
  } catch {
    return fail('its header is not JSON');
  }
  if (header.format !== FORMAT || header.version !== VERSION)
    fail(`format ${String(header.format)} v${String(header.version)}`);
  for (const field of ['arch', 'contract', 'forkFrom', 'exactUpTo'] as const)
    if (header[field] !== key[field])
      fail(`${field} ${JSON.stringify(header[field])}, this search's ${JSON.stringify(key[field])}`);
  if (JSON.stringify(header.world) !== JSON.stringify(key.world))
    fail(`world ${JSON.stringify(header.world)}, this search's ${JSON.stringify(key.world)}`);
  const frontier = header.frontier as { length: number; count: number };
  const visitedCount = header.visited as number;
  const counts = [
    frontier?.length,
    frontier?.count,
    visitedCount,
    header.level,
    header.transitions,
    header.fingerprintsFrom,
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
    (levels as number[]).reduce((a, b) => a + b, 0) !== visitedCount ||
    (header.fingerprintsFrom as number) > visitedCount
  )
    fail('its levels, frontier and visited count disagree');
  const properties = header.properties as Record<string, { holds?: unknown; vacuous?: unknown }> | null;
  const tallies = header.counts as Record<string, { premise?: unknown; violated?: unknown }> | null;
  for (const name of PROPERTY_NAMES) {
    const p = properties?.[name];
    const c = tallies?.[name];
    if (typeof p?.holds !== 'boolean' || typeof p.vacuous !== 'boolean') fail(`no result for ${name}`);
    if (!Number.isSafeInteger(c?.premise) || !Number.isSafeInteger(c?.violated)) fail(`no counts for ${name}`);
  }
  let at = 4 + headerLength;
  const tracesLength = frontier.count * frontier.length;
  if (buffer.length !== at + tracesLength + frontier.count * 8 + visitedCount * 8)
    fail('its size does not match its header');
  if (createHash('sha256').update(buffer.subarray(at)).digest('hex') !== header.sha256)
    fail('its contents do not match their checksum');
  const traces = new Uint8Array(Math.max(1, frontier.length) * Math.max(64, frontier.count));
  traces.set(buffer.subarray(at, at + tracesLength));
  at += tracesLength;
  const prints = readWords(buffer, at, frontier.count * 2);
  at += frontier.count * 8;
  const visited = readWords(buffer, at, visitedCount * 2);
  return {
    ...key,
    level: header.level as number,
    levels: header.levels as number[],
    transitions: header.transitions as number,
    properties: header.properties as Checkpoint['properties'],
    counts: header.counts as Checkpoint['counts'],
    fingerprintsFrom: header.fingerprintsFrom as number,
    frontier: { length: frontier.length, count: frontier.count, traces, prints },
    visited,
  };
}
