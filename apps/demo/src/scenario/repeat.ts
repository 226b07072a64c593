/** Run `body(i)` for i in [0, times) with `counter` bound to i, then give the counter its outer value back. */
export function iterate(
  counters: Map<string, bigint>,
  counter: string,
  times: number,
  body: (i: number) => void,
): void {
  const saved = counters.get(counter);
  try {
    for (let i = 0; i < times; i++) {
      counters.set(counter, BigInt(i));
      body(i);
    }
  } finally {
    if (saved === undefined) counters.delete(counter);
    else counters.set(counter, saved);
  }
}
