// symrun watchd --auth munge (slurm/watchd.ts, slurm/munge.ts): each subscriber is a user, named by a
// MUNGE credential (faked here: munge/unmunge need munged); a user gets only its own jobs, and watchd
// proves itself by completing the handshake with the secret only its user could decode.
import t, { type Test } from 'tap';
import { connectChannel } from '../../launcher/src/agent/channel.js';
import { startWatchd } from '../../launcher/src/slurm/watchd.js';
import { parseUnmunge, type MungeIdentity } from '../../launcher/src/slurm/munge.js';

const NODES = 'NodeName=n1 Arch=x86_64 CPUTot=2 State=IDLE Partitions=lab\nNodeName=n2 Arch=x86_64 CPUTot=2 State=IDLE Partitions=lab\n';

/** A fake MUNGE: encode(uid, payload, restrictTo) → a credential; decode as `decoder` (refuses replays, and other users' credentials). */
class FakeMunge {
  private creds = new Map<string, { uid: number; payload: string; restrict: string }>();
  private used = new Set<string>();
  encode(uid: number, payload: string, restrict: string): string {
    const cred = `MUNGE:fake${this.creds.size}:`;
    this.creds.set(cred, { uid, payload, restrict });
    return cred;
  }
  decoder = (as: string) => async (cred: string): Promise<MungeIdentity> => {
    const c = this.creds.get(cred);
    if (!c) return parseUnmunge('STATUS:          Invalid credential (6)\n');
    if (this.used.has(cred)) return parseUnmunge('STATUS:          Replayed credential (15)\n');
    if (c.restrict !== as) return parseUnmunge('STATUS:          Unauthorized credential for client UID (16)\n');
    this.used.add(cred);
    return parseUnmunge(`STATUS:          Success (0)\nUID:             ${c.uid}\nGID:             ${c.uid}\nLENGTH:          64\n\n${c.payload}\n`);
  };
}

const secretOf = (i: number) => i.toString(16).padStart(2, '0').repeat(32);

async function daemon(t: Test, munge: FakeMunge, runsAs = 'symrun') {
  const owners: Record<string, number> = { '100': 1000, '200': 2000 };
  const w = await startWatchd({
    host: '127.0.0.1', port: 0, intervalMs: 40, run: async () => NODES, munge: { decode: munge.decoder(runsAs) },
    privilegedUids: [64030], jobOwner: async (job) => { const o = owners[job]; if (o === undefined) throw new Error('no such job'); return o; },
  });
  t.teardown(() => w.stop());
  return w;
}

const as = (port: number, munge: FakeMunge, uid: number, i: number, restrict = 'symrun') =>
  connectChannel({ host: '127.0.0.1', port, secret: secretOf(i), name: `uid${uid}`, timeoutMs: 2_000, intro: { auth: 'munge', cred: munge.encode(uid, secretOf(i), restrict) } }).then((p) => p.start());

t.test('unmunge output: the UID of a good credential; a refused one names MUNGE\'s status', async (t) => {
  t.same(parseUnmunge('STATUS:          Success (0)\nENCODE_HOST:     n1 (10.0.0.1)\nUID:             1000\nGID:             100\nLENGTH:          4\n\nabcd\n'), { uid: 1000, gid: 100, payload: 'abcd' });
  t.throws(() => parseUnmunge('STATUS:          Replayed credential (15)\n'), { code: 'ESYM_WATCHD_MUNGE', message: /refused: Replayed credential \(15\)/ });
  // as real `unmunge -N` prints them (munge 0.5, a credential decoded twice; one restricted to another user)
  t.throws(() => parseUnmunge('STATUS:          17\nENCODE_HOST:     127.0.0.1\n'), { message: /refused: replayed credential \(17\)/ });
  t.throws(() => parseUnmunge('STATUS:          18\n'), { message: /credential for another user .*\(18\)/ });
  t.same(parseUnmunge('STATUS:          0\nENCODE_HOST:     127.0.0.1\nTTL:             300\nUID:             0\nGID:             0\nUID_RESTRICTION: 0\nLENGTH:          4\n\ncdcd'), { uid: 0, gid: 0, payload: 'cdcd' });
  t.throws(() => parseUnmunge('STATUS:          Success (0)\nUID:             alice\n\nx'), { code: 'ESYM_WATCHD_MUNGE', message: /no numeric UID/ });
});

t.test('a user subscribes to its own job only; root and SlurmUser to any; stats for them only', async (t) => {
  const munge = new FakeMunge();
  const w = await daemon(t, munge);
  const alice = await as(w.server.port, munge, 1000, 1);
  const r = await alice.call<{ nodes: unknown[] }>('watch.subscribe', { nodes: ['n1'], job: '100' });
  t.equal(r.nodes.length, 1, 'its own job');
  await t.rejects(alice.call('watch.subscribe', { nodes: ['n1'], job: '200' }), { code: 'ESYM_WATCHD_DENIED', message: 'Slurm job 200 belongs to uid 2000, not to this subscriber (uid 1000)' });
  await t.rejects(alice.call('watch.subscribe', { nodes: ['n1'] }), { code: 'ESYM_WATCHD_DENIED', message: /must name the subscriber's Slurm job/ });
  await t.rejects(alice.call('watch.subscribe', { nodes: ['n1'], job: '999' }), { code: 'ESYM_WATCHD_DENIED', message: /cannot say whose job 999 is/ });
  await t.rejects(alice.call('watch.stats', {}), { code: 'ESYM_WATCHD_DENIED', message: /only root and SlurmUser/ });
  const root = await as(w.server.port, munge, 0, 2);
  t.ok(await root.call('watch.subscribe', { nodes: ['n1'], job: '200' }), 'root: any job');
  t.ok(await root.call('watch.stats', {}), 'root: stats');
  const slurmUser = await as(w.server.port, munge, 64030, 3);
  t.ok(await slurmUser.call('watch.subscribe', { nodes: ['n2'] }), 'SlurmUser: without a job too');
  const stats = await root.call<{ subscriberList: Array<{ name: string }> }>('watch.stats', { subscribers: true });
  t.same(stats.subscriberList.map((s) => s.name).sort(), ['uid0 (uid 0)', 'uid1000 (uid 1000)', 'uid64030 (uid 64030)']);
  for (const p of [alice, root, slurmUser]) p.close();
});

t.test('no credential, a replayed one, or a key-mode client: refused before any method', async (t) => {
  const munge = new FakeMunge();
  const w = await daemon(t, munge);
  await t.rejects(connectChannel({ host: '127.0.0.1', port: w.server.port, secret: 'k'.repeat(64), name: 'key-client', timeoutMs: 2_000 }), { code: 'ESYM_CHANNEL_AUTH', message: /authenticates each user \(MUNGE\)/ }, 'a key-mode client');
  const cred = munge.encode(1000, secretOf(4), 'symrun');
  const first = await connectChannel({ host: '127.0.0.1', port: w.server.port, secret: secretOf(4), name: 'u', timeoutMs: 2_000, intro: { auth: 'munge', cred } });
  first.close();
  // someone who captured the credential replays it (MUNGE refuses; and it would not know the secret)
  await t.rejects(connectChannel({ host: '127.0.0.1', port: w.server.port, secret: secretOf(4), name: 'u', timeoutMs: 2_000, intro: { auth: 'munge', cred } }), { code: 'ESYM_CHANNEL_AUTH' }, 'replayed');
  await t.rejects(connectChannel({ host: '127.0.0.1', port: w.server.port, secret: secretOf(5), name: 'u', timeoutMs: 2_000, intro: { auth: 'password', cred: 'x' } }), { code: 'ESYM_CHANNEL_AUTH' }, 'no credential');
});

t.test('a watchd that is not the user it claims cannot answer the handshake: the subscriber refuses it', async (t) => {
  const munge = new FakeMunge();
  // an impostor watchd running as uid "mallory": it cannot decode a credential made for "symrun"
  const w = await daemon(t, munge, 'mallory');
  await t.rejects(as(w.server.port, munge, 1000, 6, 'symrun'), { code: 'ESYM_CHANNEL_AUTH' });
  // and one that accepts anyone without decoding (with a secret it made up) cannot check the subscriber's proof, nor prove its own
  const fake = await startWatchd({ host: '127.0.0.1', port: 0, intervalMs: 40, run: async () => NODES, munge: { decode: async () => ({ uid: 1000, gid: 1000, payload: secretOf(99) }) } });
  t.teardown(() => fake.stop());
  await t.rejects(as(fake.server.port, munge, 1000, 7), { code: 'ESYM_CHANNEL_AUTH' });
});
