// `symrun image install-agent DIR`: symrun's guest side put into a root filesystem a user brings
// (docs/images.md). Everything goes under /opt/symrun, self-contained, so it works whatever the
// distribution ships (or lacks):
//   /opt/symrun/lib/         the host's node binary, its shared libraries and their loader (ldd closure)
//   /opt/symrun/bin/node     a wrapper running node through that loader with --library-path (no
//                            LD_LIBRARY_PATH: the job's processes the agent starts never see those libraries)
//   /opt/symrun/dist/guest/  the guest agent and symrun-rsh (compiled JavaScript of this repository)
//   /opt/symrun/node_modules/node-pty/
//   /opt/symrun/bin/symrun-rsh, /opt/symrun/sbin/init (guest/image/init.sh, starting the agent with the
//                            wrapper)
//   /sbin/init               -> /opt/symrun/sbin/init; an image's own /sbin/init (systemd) is kept as
//                            /sbin/init.distro and not started: symrun's init is PID 1 in a job's VM
//   /etc/openmpi/openmpi-mca-params.conf  plm_rsh_agent = /opt/symrun/bin/symrun-rsh (appended)
// The image's own Open MPI runs the job; what the program needs and the image lacks is staged per job.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SymError, EXIT } from '../errors.js';
import { hostPaths, walk, nodePtyFilter, SCRIPT_NAMES } from './inputs.js';
import { lddClosure } from './build.js';
import { AGENT_ENTRY } from './disk.js';

export interface InstallResult { files: number; bytes: number; distroInit?: string }

/** The line of init.sh that starts the agent with the default image's /usr/bin/node. */
const AGENT_LINE = 'SYMRUN_AGENT_PORT=$port /usr/bin/node "$agent"';

/** Resolve a guest path inside root, following the root's own relative top-level symlinks (merged /usr). */
async function inRoot(root: string, guest: string): Promise<string> {
  const parts = guest.split('/').filter(Boolean);
  let cur = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const next = path.join(cur, parts[i]!);
    let st: fs.Stats | undefined;
    try { st = await fsp.lstat(next); } catch { /* missing */ }
    if (st?.isSymbolicLink()) {
      const t = await fsp.readlink(next);
      cur = t.startsWith('/') ? path.join(root, t) : path.join(cur, t);
    } else cur = next;
  }
  return path.join(cur, parts.at(-1)!);
}

async function put(root: string, guest: string, content: string | Buffer, mode: number): Promise<void> {
  const p = await inRoot(root, guest);
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.rm(p, { force: true });
  await fsp.writeFile(p, content);
  await fsp.chmod(p, mode);
}

async function copyTree(src: string, files: readonly string[], root: string, guestDir: string): Promise<number> {
  let bytes = 0;
  for (const rel of files) {
    const s = path.join(src, rel);
    const st = await fsp.lstat(s);
    const d = await inRoot(root, path.posix.join(guestDir, rel));
    await fsp.mkdir(path.dirname(d), { recursive: true });
    await fsp.rm(d, { force: true });
    if (st.isSymbolicLink()) await fsp.symlink(await fsp.readlink(s), d);
    else { await fsp.copyFile(s, d); await fsp.chmod(d, st.mode & 0o7777); bytes += st.size; }
  }
  return bytes;
}

/** Install symrun's guest agent into the root directory `root` (run as root so owners stay 0:0). */
export async function installAgent(root: string, opts: { signal?: AbortSignal; onProgress?: (s: string) => void } = {}): Promise<InstallResult> {
  const progress = opts.onProgress ?? (() => {});
  let st: fs.Stats | undefined;
  try { st = await fsp.stat(root); } catch { /* missing */ }
  if (!st?.isDirectory() || !fs.existsSync(path.join(root, 'etc'))) {
    throw new SymError('ESYM_IMAGE_DISK', {
      message: `${root} is not the root directory of a distribution (no ${path.join(root, 'etc')})`,
      value: root,
      fix: 'give the directory debootstrap (or another tool) made, or a disk image file (docs/images.md)',
      exitCode: EXIT.usage,
    });
  }
  const paths = hostPaths();
  if (!fs.existsSync(path.join(paths.guestDist, 'src', 'agent.js'))) {
    throw new SymError('ESYM_IMAGE_HOST_FILE', {
      message: `the guest agent ${path.join(paths.guestDist, 'src', 'agent.js')} is not built`,
      value: paths.guestDist,
      fix: 'build symrun first: `npm run build`',
      exitCode: EXIT.environment,
    });
  }
  let files = 0, bytes = 0;

  progress(`node ${paths.node} and its libraries -> /opt/symrun/lib`);
  const { libs, notFound } = await lddClosure([paths.node], opts.signal);
  if (notFound.size) throw new SymError('ESYM_IMAGE_HOST_FILE', { message: `node's libraries are missing on this host: ${[...notFound.values()].flat().join(', ')}`, exitCode: EXIT.environment, fix: 'reinstall nodejs on the host' });
  let loader: string | undefined;
  for (const lib of libs) {
    const name = path.basename(lib);
    if (/^ld-linux.*\.so/.test(name)) loader = name;
    await put(root, `/opt/symrun/lib/${name}`, await fsp.readFile(lib), 0o755);
    files++; bytes += (await fsp.stat(lib)).size;
  }
  if (!loader) throw new SymError('ESYM_IMAGE_HOST_FILE', { message: `ldd ${paths.node} names no dynamic loader (ld-linux*.so)`, exitCode: EXIT.environment, fix: 'use a dynamically linked node (SYMRUN_GUEST_NODE)' });
  await put(root, '/opt/symrun/lib/node', await fsp.readFile(paths.node), 0o755);
  await put(root, '/opt/symrun/bin/node', `#!/bin/sh\nexec /opt/symrun/lib/${loader} --library-path /opt/symrun/lib /opt/symrun/lib/node "$@"\n`, 0o755);
  files += 2;

  progress('guest agent and node-pty -> /opt/symrun');
  const dist = await walk(paths.guestDist);
  bytes += await copyTree(paths.guestDist, dist, root, '/opt/symrun/dist/guest');
  const pty = fs.existsSync(paths.nodePty) ? await walk(paths.nodePty, nodePtyFilter) : [];
  bytes += await copyTree(paths.nodePty, pty, root, '/opt/symrun/node_modules/node-pty');
  files += dist.length + pty.length;
  await put(root, '/opt/symrun/package.json', JSON.stringify({ name: 'symrun-guest', private: true, type: 'module' }, null, 2) + '\n', 0o644);
  await put(root, '/opt/symrun/bin/symrun-rsh', '#!/bin/sh\nexec /opt/symrun/bin/node /opt/symrun/dist/guest/src/rsh.js "$@"\n', 0o755);

  progress('init: /opt/symrun/sbin/init, /sbin/init');
  const init = await fsp.readFile(path.join(paths.scriptsDir, SCRIPT_NAMES.init), 'utf8');
  if (!init.includes(AGENT_LINE)) {
    throw new SymError('ESYM_IMAGE_SOURCE', { message: `guest/image/${SCRIPT_NAMES.init} no longer starts the agent with \`${AGENT_LINE}\``, exitCode: EXIT.environment, fix: 'update launcher/src/image/agent.ts with the new line' });
  }
  await put(root, '/opt/symrun/sbin/init', init.replace(AGENT_LINE, 'SYMRUN_AGENT_PORT=$port /opt/symrun/bin/node "$agent"'), 0o755);
  const sbinInit = await inRoot(root, '/sbin/init');
  let distroInit: string | undefined;
  let cur: fs.Stats | undefined;
  try { cur = await fsp.lstat(sbinInit); } catch { /* none: minbase */ }
  // relative: the initrd checks /newroot/sbin/init before switch_root, where an absolute link would miss
  const target = path.relative(path.dirname(sbinInit), await inRoot(root, '/opt/symrun/sbin/init'));
  const ours = cur?.isSymbolicLink() && (await fsp.readlink(sbinInit)) === target;
  if (cur && !ours) {
    distroInit = '/sbin/init.distro';
    await fsp.rm(`${sbinInit}.distro`, { force: true });
    await fsp.rename(sbinInit, `${sbinInit}.distro`);
  }
  if (!ours) {
    await fsp.mkdir(path.dirname(sbinInit), { recursive: true });
    await fsp.symlink(target, sbinInit);
  }

  const mca = await inRoot(root, '/etc/openmpi/openmpi-mca-params.conf');
  let mcaText = '';
  try { mcaText = await fsp.readFile(mca, 'utf8'); } catch { /* none */ }
  if (!/^plm_rsh_agent = \/opt\/symrun\/bin\/symrun-rsh$/m.test(mcaText)) {
    await put(root, '/etc/openmpi/openmpi-mca-params.conf', `${mcaText}${mcaText && !mcaText.endsWith('\n') ? '\n' : ''}# added by symrun image install-agent\nplm_rsh_agent = /opt/symrun/bin/symrun-rsh\n`, 0o644);
  }
  if (!fs.existsSync(await inRoot(root, AGENT_ENTRY))) throw new SymError('ESYM_IMAGE_BUILD', { message: `${AGENT_ENTRY} is missing after the install`, exitCode: EXIT.runtime });
  return { files, bytes, ...(distroInit ? { distroInit } : {}) };
}
