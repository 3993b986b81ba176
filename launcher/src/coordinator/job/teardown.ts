// The job's teardown stack: every resource is registered the moment it exists; teardown removes them in
// reverse order, each step bounded by what is left of the whole teardown's deadline, and goes on after
// a step that fails or times out (saying so). Ctrl-C, SIGTERM or a failure in any phase end here.

export class Teardown {
  private steps: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];

  constructor(private warn: (line: string) => void) {}

  /** Register a cleanup step (run last-in, first-out). */
  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, fn });
  }

  /** Run every registered step, newest first, within `totalMs` (each step gets at least 500 ms). */
  async run(totalMs: number): Promise<void> {
    const deadline = Date.now() + totalMs;
    while (this.steps.length) {
      const step = this.steps.pop()!;
      const left = Math.max(500, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([Promise.resolve().then(step.fn), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${left} ms`)), left); })]);
      } catch (e) {
        this.warn(`teardown of ${step.what} failed: ${(e as Error).message}`);
      } finally {
        clearTimeout(timer); // a pending timer would keep symrun alive after the job
      }
    }
  }
}
