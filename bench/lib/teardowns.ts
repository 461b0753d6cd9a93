/** What tap's `t.teardown` does, for benchmarks that use the test helpers outside tap. */
export class Teardowns {
  private fns: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn();
    this.fns = [];
  }
}
