// `symrun image build|info` and `symrun config`: the guest image and the resolved configuration.
import { Option, type Command } from 'commander';
import { loadConfig, describeConfig } from '../config/index.js';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { buildImage, resolveImage, buildDebian, installAgent, makeDisk, extractDisk, diskFormat, type DiskFormat } from '../image/index.js';
import { siteImageDirs } from '../node/config.js';
import { SymError, EXIT } from '../errors.js';
import { checkCpusPerTask } from './args.js';

export function registerImage(program: Command): void {
  const image = program.command('image').description('build or inspect the guest image');
  image
    .command('build')
    .description('build (or reuse, content-addressed) the guest image')
    .option('--force', 'rebuild even if an image with the same hash exists')
    .option('--json', 'print the image description as JSON')
    .option('--mpich', 'the image for MPICH programs (MPICH\'s packages too; symrun builds it when a job needs it)')
    .action(async (f: { force?: boolean; json?: boolean; mpich?: boolean }) => {
      const info = await buildImage({ force: f.force, mpich: f.mpich, siteDirs: siteImageDirs(), onProgress: f.json ? undefined : (s: string) => process.stderr.write(`symrun: image: ${s}\n`) });
      process.stdout.write(f.json ? JSON.stringify(info, null, 2) + '\n' : `${info.builtNow ? 'built' : 'reused'} image ${info.hash.slice(0, 12)} in ${info.dir}\n`);
    });
  image
    .command('info')
    .description('show the image a job would use')
    .option('-C, --config <file>', 'symrun.yaml to read (default: $SYMRUN_CONFIG)')
    .addOption(new Option('-c <value>').hideHelp())
    .option('--json', 'print the image description as JSON')
    .action(async (f: { config?: string; json?: boolean; c?: string }) => {
      checkCpusPerTask(f.c, '-c', true);
      const cfg = loadConfig({ file: f.config });
      const info = await resolveImage(cfg.imageDisk ?? cfg.image, { siteDirs: siteImageDirs() });
      process.stdout.write(f.json ? JSON.stringify(info, null, 2) + '\n' : `image ${info.hash.slice(0, 12)}${info.site ? ' (site cache)' : ''}\n  kernel ${info.kernel} (${info.kernelVersion})\n  initrd ${info.initrd}\n  root   ${info.rootfs}${info.rootFormat === 'qcow2' ? ' (qcow2)' : ''}\n`);
    });
  registerBringYourOwn(image);

}

export function registerConfig(program: Command): void {
  program
    .command('config')
    .description('show the resolved configuration')
    .option('-C, --config <file>', 'symrun.yaml to read (default: $SYMRUN_CONFIG)')
    .addOption(new Option('-c <value>').hideHelp())
    .option('--json', 'print the configuration as JSON')
    .action((f: { config?: string; json?: boolean; c?: string }) => {
      checkCpusPerTask(f.c, '-c', true);
      const cfg = loadConfig({ file: f.config });
      process.stdout.write(f.json ? JSON.stringify(cfg, null, 2) + '\n' : describeConfig(cfg) + '\n');
    });

}

const say = (json?: boolean) => (json ? undefined : (s: string) => process.stderr.write(`symrun: image: ${s}\n`));

function formatOf(raw?: boolean): DiskFormat { return raw ? 'raw' : 'qcow2'; }

/** `symrun image debian | install-agent | disk`: images users bring (docs/images.md). */
function registerBringYourOwn(image: Command): void {
  image
    .command('debian')
    .description('build (or reuse, cached by its inputs) a Debian disk image with Open MPI and symrun\'s guest agent: debootstrap --variant=minbase from the mirror apt uses (root)')
    .option('--out <file>', 'copy the disk (and FILE.symrun.json) here; default: print the cached disk\'s path')
    .option('--no-agent', 'leave the guest agent out (an image symrun refuses to boot: for tests of that error)')
    .option('--mirror <url>', 'Debian mirror (default: the one /etc/apt/sources.list* names for this release)')
    .option('--suite <name>', 'Debian release (default: this machine\'s, from /etc/os-release)')
    .option('--include <pkgs>', 'comma-separated packages instead of the default list (openmpi-bin,iproute2,iputils-arping,kmod)')
    .option('--raw', 'a raw disk instead of qcow2')
    .option('--json', 'print the result as JSON')
    .action(async (f: { out?: string; agent: boolean; mirror?: string; suite?: string; include?: string; raw?: boolean; json?: boolean }) => {
      const r = await buildDebian({ out: f.out, agent: f.agent, mirror: f.mirror, suite: f.suite, packages: f.include?.split(',').map((p) => p.trim()).filter(Boolean), format: formatOf(f.raw), onProgress: say(f.json) });
      process.stdout.write(f.json ? JSON.stringify(r, null, 2) + '\n' : `${r.disk}\n`);
    });
  image
    .command('install-agent')
    .description('install symrun\'s guest agent into a root directory or a disk image (raw or qcow2 holding ext4), in place (root)')
    .argument('<target>', 'root directory (e.g. made by debootstrap) or disk image file')
    .option('--json')
    .action(async (target: string, f: { json?: boolean }) => {
      const abs = path.resolve(target);
      const st = await fsp.stat(abs).catch(() => undefined);
      if (!st) throw new SymError('ESYM_IMAGE_DISK', { message: `${abs} does not exist`, value: target, fix: 'give a root directory or a disk image file', exitCode: EXIT.usage });
      if (st.isDirectory()) {
        const r = await installAgent(abs, { onProgress: say(f.json) });
        process.stdout.write(f.json ? JSON.stringify(r) + '\n' : `installed symrun's guest agent in ${abs} (${r.files} files${r.distroInit ? `; the image's init kept as ${r.distroInit}` : ''})\n`);
        return;
      }
      const work = await fsp.mkdtemp(path.join(path.dirname(abs), `.${path.basename(abs)}.agent-`));
      try {
        const fmt = await diskFormat(abs);
        say(f.json)?.(`extracting ${abs} (${fmt})`);
        await extractDisk(abs, path.join(work, 'root'));
        const r = await installAgent(path.join(work, 'root'), { onProgress: say(f.json) });
        await makeDisk(path.join(work, 'root'), abs, { format: fmt, agent: true, onProgress: say(f.json) });
        process.stdout.write(f.json ? JSON.stringify(r) + '\n' : `installed symrun's guest agent in ${abs} (${r.files} files${r.distroInit ? `; the image's init kept as ${r.distroInit}` : ''})\n`);
      } finally {
        await fsp.rm(work, { recursive: true, force: true });
      }
    });
  image
    .command('disk')
    .description('make a disk image (ext4 without a partition table, qcow2 or raw) from a root directory, with its file list (FILE.symrun.json)')
    .argument('<dir>', 'root directory')
    .argument('<out>', 'disk image to write')
    .option('--raw', 'a raw disk instead of qcow2')
    .action(async (dir: string, out: string, f: { raw?: boolean }) => {
      const r = await makeDisk(path.resolve(dir), path.resolve(out), { format: formatOf(f.raw), onProgress: say(false) });
      process.stdout.write(`${path.resolve(out)} (${(r.bytes / 1048576).toFixed(0)} MiB, ${(r.ms / 1000).toFixed(1)} s)\n`);
    });
}
