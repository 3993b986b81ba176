// Files into and out of the guests. In: the program's closure (absolute paths) and a snapshot of the
// job's directory, as tar over the guest agent channel, all in guest RAM (so they survive migration).
// Out: files the ranks wrote in the job's directory since staging (newer than a marker), copied back
// through the checked extractor (no links, no `..`, size-limited): a guest is not trusted.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { SymError } from '../../errors.js';
import { tarCreate, tarExtractSafe } from '../../stage/index.js';
import type { JobContext } from './context.js';

export async function stageIn(job: JobContext, absFiles: string[], cwdFiles: string[]): Promise<void> {
  const cwd = job.opts.cwd;
  const bufs: Array<{ argv: string[]; data: Buffer }> = [];
  if (absFiles.length) bufs.push({ argv: ['tar', '-x', '-f', '-', '-C', '/'], data: await collect(tarCreate({ absolute: absFiles })) });
  if (cwdFiles.length) bufs.push({ argv: ['sh', '-c', `mkdir -p "$0" && tar -x -f - -C "$0"`, cwd], data: await collect(tarCreate({ root: cwd, paths: cwdFiles })) });
  await Promise.all(
    [...job.vms.values()].map(async (v) => {
      await v.client.run(['mkdir', '-p', cwd, '/run/symrun']);
      for (const b of bufs) {
        const r = await v.client.run(b.argv, { input: b.data, timeoutMs: 300_000 });
        if (r.status !== 0) throw new SymError('ESYM_STAGE_IN', { message: `staging files into ${v.name} failed: ${r.stderr.trim()}` });
      }
      if (absFiles.some((f) => /\.so(\.|$)/.test(f))) await v.client.run(['ldconfig']);
      // files the ranks write after this marker come back to the host
      await v.client.run(['touch', '/run/symrun/stage-marker']);
    }),
  );
}

export async function stageOut(job: JobContext): Promise<void> {
  if (!job.config.share.cwd) return;
  const cwd = job.opts.cwd;
  const st = fs.statSync(cwd);
  for (const v of job.vms.values()) {
    if (v.client.state !== 'ready') {
      job.say(`cannot fetch results from ${v.name} (agent not connected)`);
      continue;
    }
    // busybox tar has no file list option: xargs hands it the names (NUL-separated, any characters)
    const script = 'cd "$0" && find . -newer /run/symrun/stage-marker -type f -print0 | xargs -0 -r tar -c -f -';
    const chunks: Buffer[] = [];
    const h = await v.client.exec({ argv: ['sh', '-c', script, cwd] }, { onStdout: (d) => chunks.push(d), onStderr: (d) => job.err.write(d) });
    const r = await h.done;
    const data = Buffer.concat(chunks);
    if (r.status !== 0 || data.length === 0) continue;
    // as root, the files become the job directory's owner's; as its user, they are the user's already
    const owner = process.getuid?.() === 0 ? { uid: st.uid, gid: st.gid } : {};
    const res = await tarExtractSafe(Readable.from([data]), cwd, { maxBytes: job.config.share.maxBytes, ...owner });
    if (res.files.length) job.say(`${v.name}: ${res.files.length} file(s) written by the job copied back to ${cwd}`);
  }
}

function collect(t: { stream: NodeJS.ReadableStream; done: Promise<void> }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    t.stream.on('data', (d: Buffer) => chunks.push(d));
    t.stream.on('error', reject);
    t.stream.on('end', () => t.done.then(() => resolve(Buffer.concat(chunks)), reject));
  });
}

/**
 * The --events file inside the job's directory is symrun's output, not the job's input: never staged in
 * (the job writes it while staging, so the guests' stale copy would look newer than the stage marker and
 * be copied back over the real one at the end).
 */
export function eventsExclude(cwd: string, file: string | undefined): string[] {
  if (!file) return [];
  const rel = path.relative(path.resolve(cwd), path.resolve(cwd, file));
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) return [];
  return [`/${rel.split(path.sep).join('/')}`];
}

/** A checkpoint directory inside the job's directory is not staged into the guests (it holds their memory). */
export function checkpointExclude(cwd: string, dir: string | undefined): string[] {
  if (!dir) return [];
  const rel = path.relative(path.resolve(cwd), path.resolve(dir));
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) return [];
  return [`/${rel.split(path.sep).join('/')}/`];
}
