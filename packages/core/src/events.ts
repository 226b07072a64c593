/**
 * Every state change, invalidation and access, as a typed event stream. Nothing is allocated when nobody
 * listens, so the model stays fast when events are not wanted.
 */
import type { AccessResult } from './access.js';

export type InvalidationCause = 'truncate' | 'to-private' | 'to-shared' | 'release' | 'memory-failure';

export interface InvalidationEvent {
  type: 'invalidate-begin' | 'invalidate-end';
  cause: InvalidationCause;
  ino: number;
  /** Byte offset and length in the guest_memfd. */
  offset: number;
  length: number;
  id: number;
}

export interface ZapEvent {
  type: 'zap';
  /** What was zapped: KVM stage-2 entries, host user PTEs, IOPTEs. */
  target: 'stage2' | 'host-pte' | 'iopte';
  cause: InvalidationCause | 'munmap' | 'madvise' | 'memslot-delete' | 'unmap';
  /** Who: 'vm:<fd>', 'mmap:<address>', 'ioas:<id>/area:<id>'. */
  owner: string;
  /** Range in the owner's own units: gfns, mapping pages, area pages. */
  start: number;
  end: number;
}

export interface RevokeEvent {
  type: 'revoke';
  cause: InvalidationCause;
  ioas: number;
  area: number;
  iova: number;
  length: number;
}

export interface CallEvent {
  type: 'call';
  op: string;
  /** A short account of what changed. */
  detail: string;
}

export interface AccessEvent {
  type: 'access';
  by: 'host' | 'host-kernel' | 'guest' | 'device';
  /** 'mmap:<address>', 'vm:<fd>', 'device:<name>'. */
  via: string;
  write: boolean;
  address: number;
  length: number;
  result: AccessResult;
  /** Set when bytes went to or came from a page the owner no longer holds (a stale mapping). */
  stale?: boolean;
}

export interface PipelineEvent {
  type: 'pipeline';
  backend: string;
  step: string;
  count: number;
}

/** A page entered or left the hardware-private state (see ArchBackend: attribute vs hardware state). */
export interface HardwareEvent {
  type: 'hardware';
  change: 'enter' | 'leave';
  cause: InvalidationCause | 'guest-fault';
  ino: number;
  offset: number;
  length: number;
}

/** A fatal fault brought the host down; every later call throws HostCrashedError. */
export interface CrashEvent {
  type: 'crash';
  by: 'host' | 'host-kernel' | 'guest' | 'device';
  via: string;
  address: number;
  fault: string;
  mechanism: string;
}

/** A consumer or backend misbehaved where the operation could not stop; it was caught and the operation went on. */
export interface ObserverErrorEvent {
  type: 'observer-error';
  source: string;
  hook: string;
  message: string;
}

export type GmemEvent = InvalidationEvent | ZapEvent | RevokeEvent | CallEvent | AccessEvent | PipelineEvent | HardwareEvent | CrashEvent | ObserverErrorEvent;
export type GmemEventType = GmemEvent['type'];

export type Listener = (event: GmemEvent) => void;

export class EventStream {
  private readonly listeners = new Set<Listener>();

  /** Whether anyone listens; emitters check this before building an event. */
  get active(): boolean {
    return this.listeners.size > 0;
  }

  /** Subscribe to every event; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Subscribe to one event type. */
  on<T extends GmemEventType>(type: T, listener: (event: Extract<GmemEvent, { type: T }>) => void): () => void {
    return this.subscribe((event) => {
      if (event.type === type) listener(event as Extract<GmemEvent, { type: T }>);
    });
  }

  /** Collect events into an array until the returned stop function is called. */
  record(): { events: GmemEvent[]; stop: () => void } {
    const events: GmemEvent[] = [];
    const stop = this.subscribe((event) => events.push(event));
    return { events, stop };
  }

  emit(event: GmemEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
