// Explorer throughput: for each architecture on one contract, one single-threaded search({ backend, contract })
// from packages/explore/dist; distinct states/s, transitions/s, elapsed and peak RSS (each search in its own
// process, so that RSS is that search's). Usage: node bench/explore-throughput.mjs [contract] [arch...]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [, , contractArg, ...archArgs] = process.argv;
const contract = contractArg ?? 'gmem-registry';
if (process.env.BENCH_CHILD) {
  const { search } = await import('@gmemlab/explore');
  const backend = (await import(`@gmemlab/${process.env.BENCH_CHILD}`)).default;
  const t = performance.now();
  const r = search({ backend, contract });
  const ms = performance.now() - t;
  // ru_maxrss is in KiB on Linux.
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ arch: r.arch, states: r.states, transitions: r.transitions, levels: r.levels.length, ms: Math.round(ms), statesPerS: Math.round((r.states / ms) * 1000), transitionsPerS: Math.round((r.transitions / ms) * 1000), peakRssMiB: Math.round(rss) }));
} else {
  for (const arch of archArgs.length > 0 ? archArgs : ['tdx', 'sev-snp', 'arm-cca', 'pkvm']) {
    process.stdout.write(execFileSync(process.execPath, [fileURLToPath(import.meta.url), contract], { env: { ...process.env, BENCH_CHILD: arch } }));
  }
}
