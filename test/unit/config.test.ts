import t from 'tap';
import path from 'node:path';
import { loadConfig, describeConfig, CONFIG_SCHEMA, OVERRIDE_OPTIONS } from '../../launcher/src/config/index.js';
import { DEFAULTS, PROTOCOL_DEFAULTS, SLURM_DEFAULTS } from '../../launcher/src/defaults.js';
import { fixture, example, yamlFile, thrown } from '../fixtures/config/helpers.js';

const noEnv = {};

t.test('no file: every default, source "defaults"', async (t) => {
  const cfg = loadConfig({ env: noEnv });
  t.same(cfg, {
    source: 'defaults',
    accel: DEFAULTS.accel,
    image: 'auto',
    vm: { memoryMiB: DEFAULTS.vm.memoryMiB, cpus: DEFAULTS.vm.cpus, machine: DEFAULTS.vm.machine, extraArgs: [] },
    interconnect: { type: 'emulated', model: DEFAULTS.interconnect.model, transport: 'tcp' },
    network: { subnet: 'auto', guestIfName: DEFAULTS.interconnect.guestIfName },
    mpi: { implementation: 'auto', tagOutput: false, mca: {}, extraArgs: [] },
    share: { cwd: true, maxBytes: DEFAULTS.share.maxBytes, exclude: [] },
    migration: {
      mode: PROTOCOL_DEFAULTS.mode, quiesce: PROTOCOL_DEFAULTS.quiesce, maxBandwidthBytes: DEFAULTS.migration.maxBandwidthBytes,
      multifdChannels: 0, downtimeLimitMs: DEFAULTS.migration.downtimeLimitMs, deadlineActions: [...PROTOCOL_DEFAULTS.deadlineActions],
      maxConcurrent: PROTOCOL_DEFAULTS.maxConcurrent, tls: 'on', hooks: {},
    },
    checkpoint: { keep: 2, maxRestarts: 3, restartFromStart: false },
    slurm: { pollIntervalMs: SLURM_DEFAULTS.pollIntervalMs, watcherKey: SLURM_DEFAULTS.watchdKeyFile, watcherAuth: 'key', watcherUser: SLURM_DEFAULTS.watchdUser },
    local: 0,
    spares: 0,
    hosts: [],
  });
  t.notOk('np' in cfg.mpi, 'np left to the planner');
  t.notOk('slotsPerVm' in cfg.mpi, 'slotsPerVm left to the planner (= cpus)');
  t.notOk('bridge' in cfg.network);
});

t.test('empty file and comment-only file = defaults', async (t) => {
  for (const f of ['empty.yaml', 'comments-only.yaml']) {
    const cfg = loadConfig({ file: fixture(f), env: noEnv });
    t.equal(cfg.source, fixture(f));
    t.same({ ...cfg, source: 'defaults' }, loadConfig({ env: noEnv }), f);
  }
});

t.test('SYMRUN_CONFIG is used when no file is given; --config wins over it', async (t) => {
  const a = yamlFile('accel: tcg\n');
  const b = yamlFile('accel: kvm\n');
  t.equal(loadConfig({ env: { SYMRUN_CONFIG: a } }).accel, 'tcg');
  t.equal(loadConfig({ env: { SYMRUN_CONFIG: a } }).source, a);
  t.equal(loadConfig({ file: b, env: { SYMRUN_CONFIG: a } }).accel, 'kvm');
  t.equal(loadConfig({ env: { SYMRUN_CONFIG: '' } }).source, 'defaults', 'empty variable = unset');
});

t.test('a relative --config path is resolved against cwd', async (t) => {
  const f = yamlFile('spares: 3\n');
  const cfg = loadConfig({ file: path.basename(f), cwd: path.dirname(f), env: noEnv });
  t.equal(cfg.source, f);
  t.equal(cfg.spares, 3);
});

t.test('every key of the full fixture is read', async (t) => {
  const file = fixture('full.yaml');
  const cfg = loadConfig({ file, env: noEnv });
  t.same(cfg, {
    source: file,
    accel: 'kvm',
    image: path.join(path.dirname(file), 'images', 'v1'),
    vm: { memoryMiB: 1024, cpus: 4, machine: 'pc-q35-8.2', extraArgs: ['-cpu', 'host'] },
    interconnect: {
      type: 'vfio',
      addresses: { node01: '0000:3b:00.1', node02: '0000:3b:00.1' },
      pool: ['0000:3b:02.0', '0000:3b:02.1'],
      transport: 'rdma',
    },
    network: { subnet: '198.18.8.0/24', guestIfName: 'fab0', bridge: 'br-fabric' },
    mpi: {
      implementation: 'openmpi',
      np: 8,
      slotsPerVm: 4,
      ntasksPerNode: 4,
      cpusPerTask: 1,
      tagOutput: true,
      mca: { btl_tcp_eager_limit: '65536', mpi_yield_when_idle: '1' },
      extraArgs: ['--bind-to', 'none'],
    },
    share: { cwd: false, maxBytes: 1024 ** 3, exclude: ['.git', '*.o'] },
    migration: {
      mode: 'postcopy', quiesce: 'hooks', maxBandwidthBytes: 2 * 1024 ** 3, multifdChannels: 4, downtimeLimitMs: 200,
      deadlineMs: 90_000, deadlineActions: ['throttle', 'stop-copy'], maxConcurrent: 3, tls: 'off',
      hooks: { quiesce: 'site-quiesce --now', resume: 'site-resume' },
    },
    checkpoint: { dir: path.join(path.dirname(file), 'ckpt'), intervalMs: 600_000, keep: 3, maxRestarts: 3, restartFromStart: false },
    slurm: { pollIntervalMs: 500, watcherKey: SLURM_DEFAULTS.watchdKeyFile, watcherAuth: 'key', watcherUser: SLURM_DEFAULTS.watchdUser },
    local: 0,
    nodes: 2,
    spares: 2,
    hosts: ['node01', 'node02'],
  });
});

t.test('every example file loads', async (t) => {
  const local = loadConfig({ file: example('local/symrun.yaml'), env: noEnv });
  t.equal(local.local, 3);
  t.equal(local.spares, 1);
  t.equal(local.accel, 'tcg');
  t.same(local.interconnect, { type: 'emulated', model: 'virtio-net-pci', transport: 'tcp' });

  const cluster = loadConfig({ file: example('cluster/symrun.yaml'), env: noEnv });
  t.equal(cluster.accel, 'kvm');
  t.equal(cluster.interconnect.type, 'vfio');
  t.ok(cluster.interconnect.type === 'vfio' && cluster.interconnect.addresses?.node01);
  t.equal(cluster.local, 0);

  const pool = loadConfig({ file: example('cluster/symrun-vf-pool.yaml'), env: noEnv });
  t.equal(pool.accel, 'kvm');
  t.ok(pool.interconnect.type === 'vfio' && pool.interconnect.pool && pool.interconnect.pool.length >= 2);
});

t.test('image: auto stays auto; a path is resolved against the file, or cwd for --image; ~ is expanded', async (t) => {
  const f = yamlFile('image: img/dir\n');
  t.equal(loadConfig({ file: f, env: noEnv }).image, path.join(path.dirname(f), 'img', 'dir'));
  t.equal(loadConfig({ file: f, env: noEnv, cwd: '/somewhere', overrides: { image: 'other' } }).image, '/somewhere/other');
  t.equal(loadConfig({ env: { HOME: '/home/u' }, overrides: { image: '~/imgs' } }).image, '/home/u/imgs');
  t.equal(loadConfig({ env: noEnv, overrides: { image: 'auto' } }).image, 'auto');
});

t.test('sizes: bare memory is MiB, bare maxBytes is bytes', async (t) => {
  const cfg = loadConfig({ file: yamlFile('vm: { memory: 768 }\nshare: { maxBytes: 1048576 }\n'), env: noEnv });
  t.equal(cfg.vm.memoryMiB, 768);
  t.equal(cfg.share.maxBytes, 1048576);
  t.equal(loadConfig({ file: yamlFile('vm: { memory: 1.5G }\n'), env: noEnv }).vm.memoryMiB, 1536);
});

t.test('mca values are strings (numbers and booleans as written)', async (t) => {
  const cfg = loadConfig({ file: yamlFile('mpi: { mca: { a: 65536, b: true, c: "x y" } }\n'), env: noEnv });
  t.same(cfg.mpi.mca, { a: '65536', b: 'true', c: 'x y' });
});

t.test('PCI addresses are stored in lower case', async (t) => {
  const cfg = loadConfig({ file: yamlFile('interconnect: { type: vfio, pool: ["0000:AF:02.0"] }\n'), env: noEnv });
  t.same(cfg.interconnect, { type: 'vfio', pool: ['0000:af:02.0'], transport: 'tcp' });
});

t.test('CLI overrides win over the file', async (t) => {
  const file = fixture('full.yaml');
  const cfg = loadConfig({
    file,
    env: noEnv,
    overrides: {
      accel: 'tcg',
      memory: '2G',
      cpus: '2',
      local: '3',
      spares: 0,
      np: '6',
      slotsPerVm: 2,
      tagOutput: false,
      mca: [['btl_tcp_eager_limit', '1024'], ['btl', 'self,tcp']],
      hosts: ['node01,node02', 'node03'],
      subnet: 'auto',
    },
  });
  t.equal(cfg.accel, 'tcg');
  t.equal(cfg.vm.memoryMiB, 2048);
  t.equal(cfg.vm.cpus, 2);
  t.equal(cfg.vm.machine, 'pc-q35-8.2', 'keys not overridden come from the file');
  t.equal(cfg.local, 3);
  t.equal(cfg.spares, 0);
  t.equal(cfg.mpi.np, 6);
  t.equal(cfg.mpi.slotsPerVm, 2);
  t.equal(cfg.mpi.tagOutput, false);
  t.same(cfg.mpi.mca, { btl_tcp_eager_limit: '1024', mpi_yield_when_idle: '1', btl: 'self,tcp' }, '--mca merges, option wins');
  t.same(cfg.hosts, ['node01', 'node02', 'node03'], 'comma lists are split');
  t.equal(cfg.network.subnet, 'auto');
  t.equal(cfg.source, file);
});

t.test('placement overrides: -N, --ntasks-per-node, --cpus-per-task (integers, validated like the file)', async (t) => {
  const cfg = loadConfig({ env: noEnv, overrides: { nodes: '2', ntasksPerNode: '4', cpusPerTask: '2' } });
  t.equal(cfg.nodes, 2);
  t.equal(cfg.mpi.ntasksPerNode, 4);
  t.equal(cfg.mpi.cpusPerTask, 2);
  t.notOk('nodes' in loadConfig({ env: noEnv }), 'no -N: left to the placement');
  const bad = (o: Parameters<typeof loadConfig>[0]) => thrown(() => loadConfig({ env: noEnv, ...o }));
  const n0 = bad({ overrides: { nodes: '0' } });
  t.same([n0.code, n0.field, n0.value], ['ESYM_CONFIG_INVALID', '-N', 0]);
  t.match(n0.message, /^-N must be at least 1/);
  const c = bad({ overrides: { cpusPerTask: '2.5' } });
  t.same([c.field, c.value], ['--cpus-per-task', '2.5']);
  t.match(c.message, /whole number/);
  const c999 = bad({ overrides: { cpusPerTask: 999 }, optionNames: { cpusPerTask: '-c' } });
  t.equal(c999.field, '-c', 'named as typed');
  t.match(c999.message, /^-c must be at most 256/);
  t.equal(bad({ file: yamlFile('mpi: { ntasksPerNode: two }\n') }).field, 'mpi.ntasksPerNode');
  t.match(describeConfig(cfg), /2 nodes of the Slurm allocation/);
  t.match(describeConfig(cfg), /4 slots per VM, 4 per node \(--ntasks-per-node\), 2 cpus per rank/);
});

t.test('overrides apply without a file', async (t) => {
  const cfg = loadConfig({ env: noEnv, overrides: { local: 2, memory: '256M', tagOutput: true } });
  t.equal(cfg.local, 2);
  t.equal(cfg.vm.memoryMiB, 256);
  t.equal(cfg.mpi.tagOutput, true);
  t.equal(cfg.source, 'defaults');
});

t.test('migration.tls: on by default, off from the file or --migration-tls; other values name the option', async (t) => {
  t.equal(loadConfig({ env: noEnv }).migration.tls, 'on');
  t.equal(loadConfig({ env: noEnv, overrides: { migrationTls: 'off' } }).migration.tls, 'off');
  t.equal(loadConfig({ file: fixture('full.yaml'), env: noEnv, overrides: { migrationTls: 'on' } }).migration.tls, 'on', 'the option wins over the file');
  t.throws(() => loadConfig({ env: noEnv, overrides: { migrationTls: 'maybe' } }), { code: 'ESYM_CONFIG_INVALID' });
  const e: any = (() => { try { loadConfig({ env: noEnv, overrides: { migrationTls: 'maybe' } }); } catch (x) { return x; } })();
  t.match(JSON.stringify(e), /--migration-tls/);
  t.match(e.fix, /on, off/);
});

t.test('overrides do not leak between calls or mutate the input', async (t) => {
  const overrides = { mca: [['a', '1']] as Array<[string, string]>, hosts: ['n1'] };
  loadConfig({ env: noEnv, overrides });
  t.same(overrides, { mca: [['a', '1']], hosts: ['n1'] });
  t.same(loadConfig({ env: noEnv }).mpi.mca, {});
});

t.test('OVERRIDE_OPTIONS names an option for every override', async (t) => {
  t.same(Object.keys(OVERRIDE_OPTIONS).sort(), ['accel', 'checkpointDir', 'checkpointInterval', 'cpus', 'cpusPerTask', 'hosts', 'image', 'keep', 'local', 'maxRestarts', 'mca', 'memory', 'migrationTls', 'mpi', 'nodes', 'np', 'ntasksPerNode', 'quiesce', 'restartFromStart', 'slotsPerVm', 'spares', 'subnet', 'tagOutput', 'transport']);
  t.equal(OVERRIDE_OPTIONS.np, '-np');
  t.equal(OVERRIDE_OPTIONS.nodes, '-N');
  t.equal(OVERRIDE_OPTIONS.cpusPerTask, '--cpus-per-task');
  t.equal(OVERRIDE_OPTIONS.mpi, '--mpi');
  t.same(loadConfig({ env: noEnv, overrides: { mpi: 'mpich' } }).mpi.implementation, 'mpich', '--mpi sets mpi.implementation');
});

t.test('describeConfig summarizes', async (t) => {
  const s = describeConfig(loadConfig({ file: example('local/symrun.yaml'), env: noEnv }));
  t.match(s, /config:\s+.*examples\/local\/symrun\.yaml/);
  t.match(s, /accel:\s+tcg/);
  t.match(s, /3 emulated hosts; 1 spare/);
  t.match(s, /512 MiB/);
  t.match(s, /emulated virtio-net-pci/);
  t.match(s, /np 6, 2 slots per VM/);
  const v = describeConfig(loadConfig({ file: fixture('full.yaml'), env: noEnv }));
  t.match(v, /vfio passthrough/);
  t.match(v, /node01=0000:3b:00\.1/);
  t.match(v, /VF pool: 0000:3b:02\.0, 0000:3b:02\.1/);
  t.match(v, /hosts: node01, node02; 2 spares/);
  t.match(v, /share:\s+off/);
  t.ok(describeConfig(loadConfig({ env: noEnv })).split('\n').length < 15, 'short');
});

t.test('CONFIG_SCHEMA documents every key', async (t) => {
  const walk = (node: any, at: string): void => {
    for (const [k, v] of Object.entries<any>(node.properties ?? {})) {
      t.ok(typeof v.description === 'string' && v.description.length > 10, `${at}${k} has a description`);
      walk(v, `${at}${k}.`);
    }
    if (node.type === 'object' && node.properties) t.equal(node.additionalProperties, false, `${at || 'top'} rejects unknown keys`);
  };
  walk(CONFIG_SCHEMA, '');
});

t.test('slurm.pollInterval: a duration (bare integer = seconds); default 1 s', async (t) => {
  t.equal(loadConfig({ env: noEnv }).slurm.pollIntervalMs, 1000);
  t.equal(loadConfig({ file: yamlFile('slurm:\n  pollInterval: 250ms\n'), env: noEnv }).slurm.pollIntervalMs, 250);
  t.equal(loadConfig({ file: yamlFile('slurm:\n  pollInterval: 2\n'), env: noEnv }).slurm.pollIntervalMs, 2000);
  t.throws(() => loadConfig({ file: yamlFile('slurm:\n  pollInterval: soon\n'), env: noEnv }), /pollInterval/);
  t.throws(() => loadConfig({ file: yamlFile('slurm:\n  poll: 1s\n'), env: noEnv }), /poll/);
});

t.test('slurm.watcher: HOST[:PORT] or unset; slurm.watcherKey: a path relative to the file', async (t) => {
  const d = loadConfig({ env: noEnv }).slurm;
  t.notOk('watcher' in d, 'unset by default: the job polls');
  t.equal(d.watcherKey, SLURM_DEFAULTS.watchdKeyFile);
  const f = yamlFile('slurm:\n  watcher: "ctl01:6825"\n  watcherKey: keys/watchd.key\n');
  const c = loadConfig({ file: f, env: noEnv }).slurm;
  t.equal(c.watcher, 'ctl01:6825');
  t.equal(c.watcherKey, path.join(path.dirname(f), 'keys', 'watchd.key'));
  t.equal(loadConfig({ file: yamlFile('slurm:\n  watcher: 10.0.0.1\n'), env: noEnv }).slurm.watcher, '10.0.0.1', 'port may be left out');
  t.throws(() => loadConfig({ file: yamlFile('slurm:\n  watcher: "ctl01:99999"\n'), env: noEnv }), /slurm\.watcher/);
  t.throws(() => loadConfig({ file: yamlFile('slurm:\n  watcher: "http://ctl01"\n'), env: noEnv }), /slurm\.watcher/);
  const m = loadConfig({ file: yamlFile('slurm:\n  watcherAuth: munge\n  watcherUser: slurm\n'), env: noEnv }).slurm;
  t.same([m.watcherAuth, m.watcherUser], ['munge', 'slurm'], 'per-user auth');
  t.throws(() => loadConfig({ file: yamlFile('slurm:\n  watcherAuth: password\n'), env: noEnv }), /slurm\.watcherAuth/);
});

t.test('checkpoint: dir (relative to the file, or to cwd for --checkpoint-dir), interval, keep', async (t) => {
  t.same(loadConfig({ env: noEnv }).checkpoint, { keep: 2, maxRestarts: 3, restartFromStart: false }, 'default: no dir, no timer, keep 2');
  const f = yamlFile('checkpoint:\n  dir: ck\n  interval: 90\n  keep: 0\n');
  t.same(loadConfig({ file: f, env: noEnv }).checkpoint, { dir: path.join(path.dirname(f), 'ck'), intervalMs: 90_000, keep: 0, maxRestarts: 3, restartFromStart: false });
  const cli = loadConfig({ file: f, env: noEnv, cwd: '/work/x', overrides: { checkpointDir: 'out', checkpointInterval: '10m', keep: '1' } });
  t.same(cli.checkpoint, { dir: '/work/x/out', intervalMs: 600_000, keep: 1, maxRestarts: 3, restartFromStart: false }, 'CLI options win; a relative --checkpoint-dir is relative to cwd');
  t.throws(() => loadConfig({ env: noEnv, overrides: { checkpointInterval: '10m' } }), { code: 'ESYM_CONFIG_INVALID', message: /checkpoint\.dir/ });
  t.throws(() => loadConfig({ env: noEnv, overrides: { checkpointDir: '/x', keep: '-1' } }), /--keep/);
  t.throws(() => loadConfig({ env: noEnv, overrides: { checkpointDir: '/x', checkpointInterval: 'often' } }), /--checkpoint-interval/);
  t.throws(() => loadConfig({ file: yamlFile('checkpoint:\n  every: 1m\n'), env: noEnv }), /every/);
});

t.test('interconnect.transport: tcp by default, --transport overrides, bad values and rdma checkpoints refused with the field named', async (t) => {
  t.equal(loadConfig({ env: noEnv }).interconnect.transport, 'tcp');
  t.equal(loadConfig({ env: noEnv, overrides: { transport: 'rdma' } }).interconnect.transport, 'rdma');
  t.equal(loadConfig({ file: yamlFile('interconnect: { transport: rdma }\n'), env: noEnv, overrides: { transport: 'tcp' } }).interconnect.transport, 'tcp');
  t.throws(() => loadConfig({ env: noEnv, overrides: { transport: 'ib' } }), { message: /--transport/ });
  t.throws(() => loadConfig({ file: yamlFile('interconnect: { transport: rdma }\ncheckpoint: { dir: /tmp/ck, interval: 10m }\n'), env: noEnv }), { code: 'ESYM_CONFIG_INVALID', field: 'checkpoint.interval', message: /interconnect\.transport: rdma/, fix: /quiesce: hooks/ });
  t.doesNotThrow(() => loadConfig({ file: yamlFile('interconnect: { transport: rdma }\nmigration: { quiesce: hooks }\ncheckpoint: { dir: /tmp/ck, interval: 10m }\n'), env: noEnv }));
});
