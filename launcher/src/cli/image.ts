// `symrun image build|info` and `symrun config`: the guest image and the resolved configuration.
import { Option, type Command } from 'commander';
import { loadConfig, describeConfig } from '../config/index.js';
import { buildImage, resolveImage } from '../image/index.js';
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
      const info = await buildImage({ force: f.force, mpich: f.mpich, onProgress: f.json ? undefined : (s: string) => process.stderr.write(`symrun: image: ${s}\n`) });
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
      const info = await resolveImage(cfg.image);
      process.stdout.write(f.json ? JSON.stringify(info, null, 2) + '\n' : `image ${info.hash.slice(0, 12)}\n  kernel ${info.kernel} (${info.kernelVersion})\n  initrd ${info.initrd}\n  root   ${info.rootfs}\n`);
    });

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
