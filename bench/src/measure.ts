/**
 * Timing. A benchmark runs operations in batches until it has done `maxOps` or spent its time budget, whichever
 * comes first, so that `pnpm bench` ends in a couple of minutes even when a target is missed: the rate is what
 * was measured in the time there was. Rates are medians of rounds (the machine is shared and noisy).
 */

/** A contender: `run(from, to)` performs operations [from, to) of its own sequence. */
export interface Contender {
  name: string;
  run(from: number, to: number): void;
  /** Operations between two looks at the clock (default: the interleave's); small for slow operations. */
  batch?: number;
}

export interface Rate {
  /** Median of the rounds' rates, operations per second (wall clock). */
  median: number;
  /**
   * CPU time this process used over wall time, across the rounds (GC threads included): well below 1 when the
   * machine is shared and this process waited for a core.
   */
  cpuShare: number;
  /** Every round's rate, in the order run. */
  rounds: number[];
  ops: number;
  seconds: number;
}

const now = () => performance.now() / 1000;

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Run `c` for at most `maxOps` operations (from `from`) or `seconds`, in batches of `batch`; returns ops and time. */
function runFor(
  c: Contender,
  from: number,
  maxOps: number,
  seconds: number,
  batch: number,
): { ops: number; seconds: number; cpu: number } {
  const cpu = process.cpuUsage();
  const start = now();
  const deadline = start + seconds;
  let done = 0;
  while (done < maxOps) {
    const n = Math.min(batch, maxOps - done);
    c.run(from + done, from + done + n);
    done += n;
    if (now() >= deadline) break;
  }
  const used = process.cpuUsage(cpu);
  return { ops: done, seconds: now() - start, cpu: (used.user + used.system) / 1e6 };
}

/**
 * Interleave contenders round by round (each gets `roundSeconds` or `maxOps / rounds` operations per round, in
 * turn), so that they see the same machine conditions; each contender's rate is the median of its rounds.
 */
export function interleave(
  contenders: readonly Contender[],
  options: { maxOps: number; rounds: number; roundSeconds: number; batch?: number },
): Rate[] {
  const perRound = Math.ceil(options.maxOps / options.rounds);
  const state = contenders.map(() => ({ next: 0, rounds: [] as number[], ops: 0, seconds: 0, cpu: 0 }));
  for (let r = 0; r < options.rounds; r++) {
    contenders.forEach((c, i) => {
      const s = state[i]!;
      const { ops, seconds, cpu } = runFor(c, s.next, perRound, options.roundSeconds, c.batch ?? options.batch ?? 1000);
      s.next += ops;
      s.ops += ops;
      s.seconds += seconds;
      s.cpu += cpu;
      s.rounds.push(ops / seconds);
    });
  }
  return state.map((s) => ({
    median: median(s.rounds),
    cpuShare: s.cpu / s.seconds,
    rounds: s.rounds,
    ops: s.ops,
    seconds: s.seconds,
  }));
}

/** One contender, timed in `rounds` rounds. */
export function measure(
  c: Contender,
  options: { maxOps: number; rounds: number; roundSeconds: number; batch?: number },
): Rate {
  return interleave([c], options)[0]!;
}
