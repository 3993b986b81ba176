// Bring-your-own images (docs/images.md): the apt source parser that picks debootstrap's mirror, the
// `image: { disk }` config form, the QEMU drive format, disk format detection and the side file, the
// site cache setting of node.conf, and the errors of a disk that is missing or has no agent.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAptFile, debianMirror, osCodename } from '../../launcher/src/image/apt-sources.js';
import { diskFormat, isDiskImage, readDiskManifest, diskManifestPath, rootListing, AGENT_ENTRY } from '../../launcher/src/image/disk.js';
import { resolveImage } from '../../launcher/src/image/index.js';
import { loadConfig } from '../../launcher/src/config/index.js';
import { qemuArgs, type VmSpec } from '../../launcher/src/vm/index.js';
import { parseNodeConfig } from '../../launcher/src/node/config.js';
import { yamlFile, thrown } from '../fixtures/config/helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'symrun-image-disk-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

t.test('apt sources: one-line and deb822; the exact suite with main wins, in file order', async (t) => {
  const deb822 = {
    file: '/etc/apt/sources.list.d/debian.sources',
    text: [
      'Types: deb deb-src',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
      'Types: deb',
      'URIs: http://deb.debian.org/debian-security',
      'Suites: bookworm-security',
      'Components: main',
    ].join('\n'),
  };
  const srcs = parseAptFile(deb822);
  t.same(srcs.map((s) => `${s.uri} ${s.suite}`), ['http://deb.debian.org/debian bookworm', 'http://deb.debian.org/debian bookworm-updates', 'http://deb.debian.org/debian-security bookworm-security']);
  const oneLine = { file: '/etc/apt/sources.list', text: '# local mirror\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib # comment\n' };
  t.same(parseAptFile(oneLine), [{ uri: 'http://mirror.example/debian/', suite: 'bookworm', components: ['main', 'contrib'], file: '/etc/apt/sources.list' }]);
  t.equal(debianMirror([oneLine, deb822], 'bookworm')?.uri, 'http://mirror.example/debian/', 'sources.list comes first');
  t.equal(debianMirror([deb822], 'bookworm')?.uri, 'http://deb.debian.org/debian');
  t.equal(debianMirror([deb822], 'trixie'), undefined);
  const third = { file: '/etc/apt/sources.list.d/x.list', text: 'deb https://packages.example/apt cloud-sdk-bookworm main\n' };
  t.equal(debianMirror([third], 'bookworm'), undefined, 'a suite that only contains the name does not count');
  const disabled = { file: '/etc/apt/sources.list.d/off.sources', text: 'Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n' };
  t.equal(debianMirror([disabled, deb822], 'bookworm')?.uri, 'http://deb.debian.org/debian');
  const noMain = { file: '/etc/apt/sources.list', text: 'deb http://x.example/debian bookworm contrib\n' };
  t.equal(debianMirror([noMain], 'bookworm'), undefined);
  t.equal(osCodename('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'), 'bookworm');
  t.equal(osCodename('ID=debian\n'), undefined);
});

t.test('config: image as { disk, kernel, initrd } resolves paths; image stays the disk path', async (t) => {
  const f = yamlFile('image:\n  disk: disks/debian.qcow2\n  kernel: ~/vmlinuz\n');
  const cfg = loadConfig({ file: f, env: { HOME: '/home/u' } });
  t.equal(cfg.image, path.join(path.dirname(f), 'disks', 'debian.qcow2'));
  t.same(cfg.imageDisk, { disk: path.join(path.dirname(f), 'disks', 'debian.qcow2'), kernel: '/home/u/vmlinuz' });
  t.equal(loadConfig({ env: {}, overrides: { image: 'auto' } }).imageDisk, undefined);
  const e = thrown(() => loadConfig({ file: yamlFile('image:\n  disk: a.qcow2\n  kernal: x\n'), env: {} }));
  t.equal(e.code, 'ESYM_CONFIG_INVALID');
  t.match(e.message, /kernal/);
  const e2 = thrown(() => loadConfig({ file: yamlFile('image:\n  kernel: x\n'), env: {} }));
  t.equal(e2.code, 'ESYM_CONFIG_INVALID');
  t.match(e2.message, /disk/);
});

t.test('QEMU: the root drive takes the image format (raw by default), read-only either way', async (t) => {
  const spec: VmSpec = {
    name: 'vm1', runDir: '/run/x', accel: 'tcg', memoryMiB: 512, cpus: 1, machine: 'q35',
    kernel: '/k', initrd: '/i', rootfs: '/d/debian.qcow2', append: 'console=ttyS0', agentSocket: '/run/x/a.sock',
    agentPortName: 'org.symrun.agent.0', rootPorts: 0, extraArgs: [],
  };
  const v = { version: { major: 7, minor: 2, micro: 22 } };
  const drive = (s: VmSpec) => qemuArgs(s, v)[qemuArgs(s, v).indexOf('-drive') + 1];
  t.equal(drive(spec), 'file=/d/debian.qcow2,if=none,id=root0,format=raw,readonly=on');
  t.equal(drive({ ...spec, rootFormat: 'qcow2' }), 'file=/d/debian.qcow2,if=none,id=root0,format=qcow2,readonly=on');
});

t.test('disk format from the first bytes; the side file and the root listing', async (t) => {
  const q = path.join(tmp, 'a.qcow2');
  fs.writeFileSync(q, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(60)]));
  const r = path.join(tmp, 'a.raw');
  fs.writeFileSync(r, Buffer.alloc(64));
  t.equal(await diskFormat(q), 'qcow2');
  t.equal(await diskFormat(r), 'raw');
  t.equal(await readDiskManifest(q), undefined, 'no side file');
  fs.writeFileSync(diskManifestPath(q), '{"format":1,"files":["/etc/hosts"],"aliases":{},"agent":false,"createdAt":"x"}');
  t.same((await readDiskManifest(q))?.files, ['/etc/hosts']);

  const root = path.join(tmp, 'root');
  fs.mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'etc'));
  fs.writeFileSync(path.join(root, 'usr', 'bin', 'true'), '');
  fs.writeFileSync(path.join(root, 'etc', 'hosts'), '');
  fs.symlinkSync('usr/bin', path.join(root, 'bin'));
  fs.symlinkSync('nowhere', path.join(root, 'dangling'));
  const l = await rootListing(root);
  t.same(l.aliases, { '/bin': '/usr/bin' });
  t.same(l.files.sort(), ['/bin', '/dangling', '/etc/hosts', '/usr/bin/true']);
});

t.test('resolveImage: a missing disk and a disk whose side file says it has no agent fail before any boot', async (t) => {
  const e = await resolveImage({ disk: path.join(tmp, 'none.qcow2') }).catch((x) => x);
  t.equal(e.code, 'ESYM_IMAGE_DISK');
  t.equal(e.field, 'image.disk');
  t.match(e.fix, /symrun image debian/);
  const q = path.join(tmp, 'noagent.qcow2');
  fs.writeFileSync(q, Buffer.from([0x51, 0x46, 0x49, 0xfb]));
  fs.writeFileSync(diskManifestPath(q), JSON.stringify({ format: 1, files: ['/etc/hosts'], aliases: {}, agent: false, createdAt: 'x' }));
  const junk = path.join(tmp, 'junk.img');
  fs.writeFileSync(junk, Buffer.alloc(4096));
  const e3 = await resolveImage({ disk: junk }).catch((x) => x);
  t.equal(e3.code, 'ESYM_IMAGE_DISK', 'a raw file without an ext superblock is refused');
  t.match(e3.message, /neither a qcow2 image nor a raw disk/);
  const ext = path.join(tmp, 'ext.raw');
  const sb = Buffer.alloc(4096);
  sb.writeUInt16LE(0xef53, 1080);
  fs.writeFileSync(ext, sb);
  t.ok(await isDiskImage(ext), 'raw with an ext superblock');
  t.notOk(await isDiskImage(junk));
  for (const spec of [{ disk: q }, q]) {
    const e2 = await resolveImage(spec).catch((x) => x);
    t.equal(e2.code, 'ESYM_IMAGE_NO_AGENT', `${typeof spec}: no agent`);
    t.match(e2.message, q);
    t.match(e2.message, AGENT_ENTRY);
    t.match(e2.fix, `symrun image install-agent ${q}`);
  }
});

t.test('node.conf: SYMRUN_SITE_IMAGES names the site image cache (default /var/cache/symrun/images, empty = none)', async (t) => {
  t.equal(parseNodeConfig('').siteImages, '/var/cache/symrun/images');
  t.equal(parseNodeConfig('SYMRUN_SITE_IMAGES=/srv/symrun/images\n').siteImages, '/srv/symrun/images');
  t.equal(parseNodeConfig('SYMRUN_SITE_IMAGES=\n').siteImages, '');
  const e = thrown(() => parseNodeConfig('SYMRUN_SITE_IMAGES=relative/dir\n', '/etc/symrun/node.conf'));
  t.equal(e.code, 'ESYM_NODE_CONFIG');
  t.match(e.message, /SYMRUN_SITE_IMAGES/);
});
