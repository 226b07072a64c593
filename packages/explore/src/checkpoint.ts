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
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Contract } from '@gmemlab/core';
import type { PropertyCounts, PropertyOutcome } from './search.js';
import type { PropertyName } from './properties.js';
import type { WorldConfig } from './world.js';

const FORMAT = 'gmemlab-explore-checkpoint';
const VERSION = 1;

/** What must match for a checkpoint to be resumed: the same search. */
export interface CheckpointKey {
  arch: string;
  contract: Contract;
  world: WorldConfig;
  forkFrom: number;
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
  const header = Buffer.from(
    JSON.stringify({
      format: FORMAT,
      version: VERSION,
      ...rest,
      frontier: { length: frontier.length, count: frontier.count },
      visited: visited.length / 2,
    }),
    'utf8',
  );
  const size = Buffer.alloc(4);
  size.writeUInt32LE(header.length, 0);
  const traces = Buffer.from(frontier.traces.buffer, frontier.traces.byteOffset, frontier.count * frontier.length);
  const temporary = `${file}.partial`;
  writeFileSync(
    temporary,
    Buffer.concat([size, header, traces, words(frontier.prints.subarray(0, frontier.count * 2)), words(visited)]),
  );
  renameSync(temporary, file);
}

/** Read a checkpoint; an Error naming what is wrong when the file is not one, or is not this search's. */
export function readCheckpoint(file: string, key: CheckpointKey): Checkpoint {
  const buffer = readFileSync(file);
  const fail = (why: string): never => {
    throw new Error(`${file}: not a checkpoint of this search: ${why}`);
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
  for (const field of ['arch', 'contract', 'forkFrom'] as const)
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
  let at = 4 + headerLength;
  const tracesLength = frontier.count * frontier.length;
  if (buffer.length !== at + tracesLength + frontier.count * 8 + visitedCount * 8)
    fail('its size does not match its header');
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
