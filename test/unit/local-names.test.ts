// Pure rules of `symrun --local`: names, addresses, subnet validation and choice, MACs.
import t from 'tap';
import { SymError } from '../../launcher/src/errors.js';
import {
  MAX_IFNAME, candidateSubnets, cidrOverlaps, coordLinkName, coordinatorAddress, guestAddress, hostAddress,
  hostName, hostNetns, macForIp, macForPort, parseCidr, parseCoordLinkName, parseNetnsName, parseSubnet,
  pickSubnet, switchHostPort, switchNetns, validateHostCount, validateIfName, validateJobId,
} from '../../launcher/src/local/names.js';
import { tapSetupLines } from '../../launcher/src/local/tap.js';
import { netnsExecPrefix, requireRoot } from '../../launcher/src/local/cluster.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SymError ? e.code : `not a SymError: ${String(e)}`;
  }
  return undefined;
}

t.test('job ids', async (t) => {
  for (const ok of ['a', 'abc123', '12345678']) t.equal(validateJobId(ok), ok);
  for (const bad of ['', 'ABC', 'a-b', '123456789', 'a b', 'é']) t.equal(code(() => validateJobId(bad)), 'ESYM_BAD_JOB_ID', bad);
});

t.test('namespace and link names', async (t) => {
  t.equal(switchNetns('j1'), 'symrun-j1-sw');
  t.equal(hostNetns('j1', 3), 'symrun-j1-h3');
  t.equal(hostName(3), 'host3');
  t.equal(switchHostPort(12), 'h12');
  t.equal(coordLinkName('abcdefgh'), 'sym-abcdefgh');
  t.ok(coordLinkName('abcdefgh').length <= MAX_IFNAME, 'longest root link name fits IFNAMSIZ');
  t.same(parseNetnsName('symrun-j1-sw'), { jobId: 'j1', role: 'switch' });
  t.same(parseNetnsName('symrun-j1-h12'), { jobId: 'j1', role: 'host', hostIndex: 12 });
  for (const other of ['symrun-j1', 'symrun-J1-sw', 'symrun-j1-h0', 'symrun-j1-hx', 'foo', 'symrun-123456789-sw', 'symrun-j1-sw2']) {
    t.equal(parseNetnsName(other), undefined, other);
  }
  t.equal(parseCoordLinkName('sym-j1'), 'j1');
  t.equal(parseCoordLinkName('eth0'), undefined);
  t.equal(parseCoordLinkName('sym-j1x-'), undefined);
  // two job ids never map to the same names
  t.not(coordLinkName('ab'), coordLinkName('abc'));
  t.not(hostNetns('ab', 1), hostNetns('a', 1));
  t.same(netnsExecPrefix('symrun-j1-h1'), ['ip', 'netns', 'exec', 'symrun-j1-h1']);
});

t.test('host count', async (t) => {
  t.equal(validateHostCount(1), 1);
  t.equal(validateHostCount(89), 89);
  for (const bad of [0, -1, 1.5, 90, NaN]) {
    t.equal(code(() => validateHostCount(bad)), 'ESYM_BAD_HOST_COUNT', String(bad));
  }
  try {
    validateHostCount(0);
  } catch (e) {
    t.equal((e as SymError).field, '--local');
  }
});

t.test('explicit subnet validation', async (t) => {
  const s = parseSubnet('198.18.7.0/24');
  t.match(s, { cidr: '198.18.7.0/24', network: '198.18.7.0', prefixLen: 24 });
  t.equal(parseSubnet('198.19.255.0/24').cidr, '198.19.255.0/24');
  t.equal(parseSubnet('198.19.0.0/16').prefixLen, 16);
  const bad: [string, RegExp][] = [
    ['10.0.0.0/24', /inside 198\.18\.0\.0\/15/],
    ['198.20.0.0/24', /inside/],
    ['198.18.7.5/24', /host bits/],
    ['198.18.7.0/25', /prefix length/],
    ['198.18.0.0/15', /prefix length/],
    ['198.18.7.0', /CIDR/],
    ['198.18.300.0/24', /invalid IPv4/],
    ['198.18.07.0/24', /invalid IPv4/],
    ['auto ', /CIDR/],
    ['', /CIDR/],
  ];
  for (const [v, re] of bad) {
    try {
      parseSubnet(v);
      t.fail(`accepted ${v}`);
    } catch (e) {
      t.ok(e instanceof SymError, v);
      const err = e as SymError;
      t.equal(err.code, 'ESYM_BAD_SUBNET', v);
      t.equal(err.field, 'network.subnet', v);
      t.equal(err.value, v);
      t.match(err.message, re, v);
      t.ok(err.fix, `${v} has a fix`);
    }
  }
  try {
    parseSubnet('198.18.7.5/24');
  } catch (e) {
    t.match((e as SymError).fix, /198\.18\.7\.0\/24/, 'suggests the network address');
  }
});

t.test('cidr arithmetic', async (t) => {
  t.same(parseCidr('198.18.3.7/24'), { base: parseCidr('198.18.3.0')!.base, prefixLen: 24 });
  t.equal(parseCidr('198.18.3.7')!.prefixLen, 32);
  t.equal(parseCidr('nope'), undefined);
  t.ok(cidrOverlaps(parseCidr('198.16.0.0/12')!, parseCidr('198.18.3.0/24')!));
  t.ok(cidrOverlaps(parseCidr('198.18.3.9')!, parseCidr('198.18.3.0/24')!));
  t.notOk(cidrOverlaps(parseCidr('198.18.4.0/24')!, parseCidr('198.18.3.0/24')!));
});

t.test('auto subnet choice', async (t) => {
  const all = candidateSubnets();
  t.equal(all.length, 512, 'every /24 of 198.18.0.0/15');
  t.equal(all[0]!.cidr, '198.18.1.0/24');
  t.equal(all[511]!.cidr, '198.18.0.0/24');
  t.equal(new Set(all.map((s) => s.cidr)).size, 512);
  const p = (s: string) => parseCidr(s)!;
  t.equal(pickSubnet([], new Set())!.cidr, '198.18.1.0/24');
  t.equal(pickSubnet([p('0.0.0.0/0'), p('192.0.2.0/24')], new Set())!.cidr, '198.18.1.0/24', 'default route ignored');
  t.equal(pickSubnet([p('198.18.1.0/24'), p('198.18.2.77')], new Set())!.cidr, '198.18.3.0/24', 'routes and addresses skipped');
  t.equal(pickSubnet([], new Set(['198.18.1.0/24', '198.18.2.0/24']))!.cidr, '198.18.3.0/24', 'claims skipped');
  t.equal(pickSubnet([p('198.18.0.0/16')], new Set())!.cidr, '198.19.0.0/24', 'a wider route covers many');
  t.equal(pickSubnet([p('198.16.0.0/12')], new Set()), undefined, 'none free');
});

t.test('addresses', async (t) => {
  const s = parseSubnet('198.18.3.0/24');
  t.equal(coordinatorAddress(s), '198.18.3.1');
  t.equal(hostAddress(s, 1), '198.18.3.11');
  t.equal(hostAddress(s, 4), '198.18.3.14');
  t.equal(hostAddress(s, 89), '198.18.3.99');
  t.throws(() => hostAddress(s, 90));
  t.equal(guestAddress(s, 1), '198.18.3.101');
  t.equal(guestAddress(s, 2), '198.18.3.102');
  t.equal(guestAddress(s, 154), '198.18.3.254');
  t.equal(code(() => guestAddress(s, 155)), 'ESYM_TOO_MANY_VMS');
  t.equal(code(() => guestAddress(s, 0)), 'ESYM_TOO_MANY_VMS');
  const s16 = parseSubnet('198.19.0.0/16');
  t.equal(guestAddress(s16, 1), '198.19.0.101');
});

t.test('fixed MACs', async (t) => {
  t.equal(macForIp('198.18.3.11'), '02:53:c6:12:03:0b');
  const s = parseSubnet('198.18.3.0/24');
  t.equal(macForPort(s, 'switchHostPort', 2), '02:54:12:03:02:02');
  const macs = [
    macForIp(coordinatorAddress(s)), macForPort(s, 'switchBridge'), macForPort(s, 'switchCoordPort'),
    ...[1, 2, 3, 4].flatMap((i) => [macForIp(hostAddress(s, i)), macForPort(s, 'switchHostPort', i), macForPort(s, 'hostUplink', i)]),
  ];
  t.equal(new Set(macs).size, macs.length, 'unique on the segment');
  for (const m of macs) {
    t.match(m, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    t.equal(parseInt(m.slice(0, 2), 16) & 3, 2, `${m} is locally administered unicast`);
  }
  t.not(macForPort(parseSubnet('198.18.4.0/24'), 'switchBridge'), macForPort(s, 'switchBridge'), 'differs per job');
});

t.test('tap names and commands', async (t) => {
  t.same(tapSetupLines('tap-vm1', 'brfab'), ['tuntap add dev tap-vm1 mode tap', 'link set dev tap-vm1 master brfab up']);
  t.match(tapSetupLines('t', 'brfab', { multiQueue: true })[0], /multi_queue$/);
  t.equal(validateIfName('abcdefghijklmno'), 'abcdefghijklmno');
  for (const bad of ['', 'abcdefghijklmnop', 'a b', 'a/b', '..', 'x;rm']) {
    t.equal(code(() => tapSetupLines(bad, 'brfab')), 'ESYM_BAD_IFNAME', JSON.stringify(bad));
  }
});

t.test('requireRoot names what needs root and the fix', async (t) => {
  const real = process.getuid;
  process.getuid = () => 1000;
  try {
    requireRoot('create network namespaces, bridges and taps');
    t.fail('did not throw');
  } catch (e) {
    const err = e as SymError;
    t.equal(err.code, 'ESYM_NEEDS_ROOT');
    t.match(err.message, /needs root to create network namespaces, bridges and taps/);
    t.match(err.fix, /root|sudo/);
    t.match(err.fix, /Slurm/);
    t.equal(err.exitCode, 3);
  } finally {
    process.getuid = real;
  }
  process.getuid = () => 0;
  try {
    t.doesNotThrow(() => requireRoot('x'));
  } finally {
    process.getuid = real;
  }
});
