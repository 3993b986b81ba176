// The guest image a job runs on: the configured one (image/index.ts resolves and builds it), or for a
// restart the image its checkpoint was taken with, which alone can run the saved guests.
import fs from 'node:fs';
import path from 'node:path';
import { SymError, EXIT } from '../../errors.js';
import { resolveImage, diskFormat, type ImageInfo } from '../../image/index.js';
import { siteImageDirs } from '../../node/config.js';
import type { PickedCheckpoint } from '../restart.js';

/**
 * The guest image a checkpoint was taken with: its own files if they are still there, else the configured
 * image if it has the same content hash. Any other image cannot run the saved guests.
 */
export async function checkpointImage(ck: PickedCheckpoint, configured: string, onProgress: (s: string) => void, signal?: AbortSignal): Promise<ImageInfo> {
  const im = ck.manifest.image;
  if ([im.kernel, im.initrd, im.rootfs].every((f) => fs.existsSync(f))) {
    const rootFormat = await diskFormat(im.rootfs);
    return { hash: im.hash, dir: path.dirname(im.rootfs), kernel: im.kernel, initrd: im.initrd, rootfs: im.rootfs, kernelVersion: '', manifestPath: path.join(path.dirname(im.rootfs), 'manifest.json'), builtNow: false, ...(rootFormat === 'qcow2' ? { rootFormat, disk: im.rootfs } : {}) };
  }
  const cur = await resolveImage(configured, { onProgress, signal, siteDirs: siteImageDirs() });
  if (cur.hash === im.hash) return cur;
  throw new SymError('ESYM_RESTART_IMAGE', {
    message: `checkpoint ${ck.manifest.name} was taken with guest image ${im.hash.slice(0, 12)} (${im.rootfs}), which is not on this machine; the configured image is ${cur.hash.slice(0, 12)}`,
    fix: 'restart where the checkpoint\'s image is (the image cache must be shared or the same), or rebuild the same image (same symrun version and inputs)',
    exitCode: EXIT.environment,
  });
}
