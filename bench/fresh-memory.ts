// How fast this machine gives a process fresh memory: first writes into a newly allocated
// buffer, one byte per 4 KiB page, three times (each buffer freed before the next). Not part of
// `npm run bench`; run it by hand, with and without glibc's huge-page tunable, to compare:
//
//   node dist/bench/fresh-memory.js [MiB]
//   GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node dist/bench/fresh-memory.js [MiB]
//
// On the development VM first writes ran at ~300 MiB/s with 4 KiB pages (a page fault each),
// which is what every new activation, KV row and output copy of a first prefill pays
// (docs/BENCHMARKS.md, "Huge pages for fresh memory").

const mib = Number(process.argv[2] ?? 1024);
if (!(Number.isInteger(mib) && mib > 0)) {
  process.stderr.write('usage: node dist/bench/fresh-memory.js [MiB, a positive integer]\n');
  process.exit(2);
}
const n = mib * 2 ** 20;
process.stdout.write(`GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? ''}\n`);
for (let run = 1; run <= 3; run++) {
  const t0 = performance.now();
  const b = Buffer.allocUnsafeSlow(n); // malloc'd, not yet written
  for (let i = 0; i < n; i += 4096) b[i] = 1;
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(`run ${run}: ${mib} MiB first written in ${s.toFixed(2)} s = ${(mib / s).toFixed(0)} MiB/s\n`);
}
