/**
 * Every state change, invalidation and access, as a typed event stream. Nothing is allocated when nobody
 * listens, so the model stays fast when events are not wanted.
 */
import type { AccessResult } from './access.js';
import { fail } from './errors.js';
import { describeValue, nearestName } from './util/args.js';
import { cloneSelf } from './util/clone.js';
import { messageOf } from './util/message.js';

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

/**
 * 'mirror' mode: after a conversion to shared completed, an iommufd area mapped pages of the range again (IOPTEs
 * to the pages' current pfns; RFC-J5, RFC-J6 "restore the right ones after").
 */
export interface RemapEvent {
  type: 'remap';
  cause: 'to-shared';
  /** 'ioas:<id>/area:<id>'. */
  owner: string;
  /** Area pages [start, end) of the converted range. */
  start: number;
  end: number;
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
  /** 'upper' when the count is an upper bound (PipelineStep.bound). */
  bound?: 'upper';
}

/** A page entered or left the hardware-private state (see ArchBackend: attribute vs hardware state). */
export interface HardwareEvent {
  type: 'hardware';
  change: 'enter' | 'leave';
  /** 'memslot-delete': the deletion's zap of private stage-2 entries, where `privateRemovalAt` is 'zap'. */
  cause: InvalidationCause | 'guest-fault' | 'memslot-delete';
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

/**
 * A consumer or backend misbehaved where the operation could not stop; it was caught and the operation went on.
 * The same record as Host.observerErrors() lists (a listener's own error is listed there but not emitted).
 */
export interface ObserverErrorEvent extends ObserverError {
  type: 'observer-error';
}

export type GmemEvent =
  | InvalidationEvent
  | ZapEvent
  | RevokeEvent
  | RemapEvent
  | CallEvent
  | AccessEvent
  | PipelineEvent
  | HardwareEvent
  | CrashEvent
  | ObserverErrorEvent;
export type GmemEventType = GmemEvent['type'];

export type Listener = (event: GmemEvent) => void;

/** Every event type, once (a Record, so that the compiler insists a new event type is listed). */
const EVENT_TYPE_RECORD: Record<GmemEventType, true> = {
  'invalidate-begin': true,
  'invalidate-end': true,
  zap: true,
  revoke: true,
  remap: true,
  call: true,
  access: true,
  pipeline: true,
  hardware: true,
  crash: true,
  'observer-error': true,
};

/** Every event type, for checking `on(type, ...)`. */
export const EVENT_TYPES: readonly GmemEventType[] = Object.freeze(Object.keys(EVENT_TYPE_RECORD) as GmemEventType[]);

/**
 * An observer that misbehaved where the operation could not stop, caught and recorded (Host.observerErrors()):
 * one shape for every kind of observer, plain data (it forks, prints and compares as it is).
 */
export interface ObserverError {
  /**
   * Who: `'listener'` (a `host.events` listener), `'consumer <label>'` (a mapping consumer of the registry) or
   * `'backend <id>'` (a backend's hook asked where the call cannot fail).
   */
  source: string;
  /** What it was doing: the event type a listener handled, the consumer's hook, or the backend's hook. */
  hook: string;
  /** What it threw, or what was wrong with its answer. */
  message: string;
}

/** How many observer errors Host.observerErrors() keeps; older ones are dropped (and still counted). */
export const OBSERVER_ERRORS_KEPT = 1000;

/**
 * The host's event stream. Listeners are observers: an event is emitted in the middle of a kernel operation
 * (between invalidate_begin and invalidate_end, say), and the kernel does not let an observer abort that, as a
 * notifier chain cannot veto a truncation. So a listener that throws never interrupts the operation: its
 * exception is caught, the remaining listeners still get the event, the operation completes, and the exception
 * is recorded, like a WARN in the kernel log, with every other observer's (Host.observerErrors(), source
 * 'listener', hook the event type). A listener's error is not itself emitted as an 'observer-error' event: a
 * listener that throws on every event would feed on its own news.
 */
export class EventStream {
  private readonly listeners = new Set<Listener>();
  /** The observer errors kept (the last OBSERVER_ERRORS_KEPT), oldest first, and how many there were. */
  private readonly observerErrorList: ObserverError[] = [];
  private observerErrorTotal = 0;
  private listenerErrorTotal = 0;

  /** Whether anyone listens; emitters check this before building an event. */
  get active(): boolean {
    return this.listeners.size > 0;
  }

  /** Subscribe to every event; returns the unsubscribe function. A listener that is not a function is EINVAL. */
  subscribe(listener: Listener): () => void {
    if (typeof listener !== 'function')
      fail('EINVAL', 'events.subscribe', `the listener is ${describeValue(listener)}, not a function`, {
        argument: 'listener',
      });
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Subscribe to one event type; an unknown type or a listener that is not a function is EINVAL. */
  on<T extends GmemEventType>(type: T, listener: (event: Extract<GmemEvent, { type: T }>) => void): () => void {
    if (!EVENT_TYPES.includes(type)) {
      const nearest = typeof type === 'string' ? nearestName(type, EVENT_TYPES) : undefined;
      fail(
        'EINVAL',
        'events.on',
        `${describeValue(type)} is not an event type${nearest ? ` (did you mean ${nearest}?)` : ''}`,
        {
          argument: 'type',
          hint: `the event types are ${EVENT_TYPES.join(', ')}`,
        },
      );
    }
    if (typeof listener !== 'function')
      fail('EINVAL', 'events.on', `the listener is ${describeValue(listener)}, not a function`, {
        argument: 'listener',
      });
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

  /**
   * How many exceptions listeners threw, kept or dropped.
   * @deprecated Read `host.observerErrors()` (source 'listener') and `host.observerErrorCount`, which list every
   * observer's error in one shape; this count stays for one minor release for code written against core 0.2.
   */
  get listenerErrorCount(): number {
    return this.listenerErrorTotal;
  }

  /** @internal Record an observer's error (Host.observerErrors() reads them). */
  keepObserverError(error: ObserverError): void {
    this.observerErrorTotal++;
    this.observerErrorList.push(error);
    if (this.observerErrorList.length > OBSERVER_ERRORS_KEPT) this.observerErrorList.shift();
  }

  /** @internal The observer errors kept, oldest first, and how many there were. */
  observerErrors(): { kept: readonly ObserverError[]; total: number } {
    return { kept: this.observerErrorList.slice(), total: this.observerErrorTotal };
  }

  /**
   * @internal The stream of a forked host: no listeners (they belong to whoever subscribed them on the original),
   * the observer errors recorded so far.
   */
  [cloneSelf](): EventStream {
    const copy = new EventStream();
    for (const error of this.observerErrorList) copy.observerErrorList.push({ ...error });
    copy.observerErrorTotal = this.observerErrorTotal;
    copy.listenerErrorTotal = this.listenerErrorTotal;
    return copy;
  }

  /**
   * @internal Deliver `event` to every listener; a listener's exception is recorded, never thrown (see the class).
   * Only the model emits: a client's forged event would reach every listener while the model says otherwise.
   */
  emit(event: GmemEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.listenerErrorTotal++;
        this.keepObserverError({ source: 'listener', hook: event.type, message: messageOf(error) });
      }
    }
  }
}
