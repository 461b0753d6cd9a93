/**
 * Run `n` jobs, `width` at a time; results in job order. Twelve lines shared by
 * the benchmarks and the brute-force e2e test rather than a dependency (p-map is
 * only in node_modules as a transitive one).
 */
export async function pool<T>(n: number, width: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await job(i);
      }
    }),
  );
  return out;
}
