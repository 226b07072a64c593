/**
 * The names a run knows: the handles earlier steps bound with `as:` (objects, or numbers such as an IOVA), the
 * scenario's `lets:` and the counters of enclosing repeats; and a step's arguments evaluated against them.
 */
import type { CallSpec } from '../scenario/calls.js';
import { evaluate, toArg, type Expr } from '../scenario/expr.js';
import type { CallStep, Scenario } from '../scenario/load.js';

/** A step names a handle that does not exist (the step that creates it failed): reported as the step's error. */
export class MissingHandle extends Error {}

export class Bindings {
  readonly handles = new Map<string, unknown>();
  readonly counters = new Map<string, bigint>();
  private readonly lets = new Map<string, bigint>();

  constructor(scenario: Pick<Scenario, 'lets'>) {
    for (const [name, expr] of scenario.lets) this.lets.set(name, evaluate(expr, this.lookup));
  }

  /** A name's value in an expression: a counter, a let, a number handle, or a mapping's user address. */
  readonly lookup = (name: string): bigint | undefined => {
    const value = this.counters.get(name) ?? this.lets.get(name) ?? this.handles.get(name);
    if (typeof value === 'bigint') return value;
    // A mapping stands for its user address (e.g. a memslot's userspaceAddr).
    if (typeof value === 'object' && value !== null && typeof (value as { address?: unknown }).address === 'number')
      return BigInt((value as { address: number }).address);
    return undefined;
  };

  /** The object the step is called on: the host, or the handle named by `on:`. */
  receiver(spec: CallSpec, step: CallStep, host: unknown): unknown {
    const receiver = spec.receiver === 'host' ? host : this.handles.get(step.on!);
    if (receiver === undefined) throw new MissingHandle(`'${step.on}' does not exist: the step that creates it failed`);
    return receiver;
  }

  /** The step's arguments, evaluated: numbers and bytes as kernel integers, flags OR'ed, handles as their objects. */
  arguments(spec: CallSpec, step: CallStep): Record<string, unknown> {
    const args: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(step.args)) {
      const argSpec = spec.args[name]!;
      if (argSpec.type === 'num' || argSpec.type === 'byte') args[name] = toArg(evaluate(value as Expr, this.lookup));
      else if (argSpec.type === 'flags')
        args[name] = toArg((value as Expr[]).reduce((acc, e) => acc | evaluate(e, this.lookup), 0n));
      else if (argSpec.type === 'handle') {
        args[name] = this.handles.get(value as string);
        if (args[name] === undefined)
          throw new MissingHandle(`'${String(value)}' does not exist: the step that creates it failed`);
      } else args[name] = value;
    }
    return args;
  }

  /** Bind (or unbind, when the call failed or faulted) the step's `as:` name. Numbers are kept as bigints. */
  bind(name: string | undefined, value: unknown, succeeded: boolean): void {
    if (name === undefined) return;
    if (succeeded) this.handles.set(name, typeof value === 'number' ? BigInt(value) : value);
    else this.handles.delete(name);
  }
}
