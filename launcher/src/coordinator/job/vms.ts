// The job's VMs: their QEMU spec on a host (the same on every host it moves to, plus the host's own
// run directory), the taps they need there, boot (the host agent starts QEMU, the guest agent says it
// is ready), the guest's interconnect configuration, and the host agent events that concern a VM
// (guest frames and link, QMP events, QEMU exits). A VM being migrated exists on two hosts: only the
// host it currently belongs to speaks for it.
import { RXE_DEVICE } from '../../mpi/transport.js';
import fs from 'node:fs';
import path from 'node:path';
import { SymError } from '../../errors.js';
import { DEFAULTS, PROTOCOL_DEFAULTS } from '../../defaults.js';
import { GuestClient } from '../../agent/guest.js';
import type { RpcPeer } from '../../agent/channel.js';
import type { GuestFrame } from '../../../../guest/protocol/index.js';
import type { HostAgentEvents } from '../../wire/hostagent.js';
import type { EventOf } from '../../wire/rpc.js';
import type { VmSpec } from '../../vm/index.js';
import { STANDBY, bootArgs, deviceKind, findArgs, nicFor, vfOffers, vfioFor, vmMac, type InterconnectDevice } from './interconnect.js';
import { vmTap, standbyTap, vmMacFor } from '../../node/names.js';
import type { TapRequest } from '../../wire/device.js';
import { tail, type HostAgents } from './agents.js';
import { noAgentError } from '../../image/index.js';
import type { JobContext, VmState } from './context.js';

type RshFrame = Extract<GuestFrame, { t: 'rsh' }>;

/** What guest/image/initrd-init.sh prints when the root has no guest agent (it then powers the VM off). */
export const NO_AGENT_CONSOLE = 'symrun-initrd: FATAL: no symrun guest agent';

/** The configured offers, or none (the node layer's claims may be all a host has). */
function vfOffersOrNone(cfg: Parameters<typeof vfOffers>[0], host: string): ReturnType<typeof vfOffers> {
  try { return vfOffers(cfg, host); } catch { return []; }
}

export class Vms {
  /** the device each VM holds on each host (`vm@host`): NICs as computed, VFs as their host agent handed them out */
  private held = new Map<string, InterconnectDevice>();

  constructor(
    private job: JobContext,
    private agents: Pick<HostAgents, 'peer'>,
    /** a guest asks (symrun-rsh) to start a command in another guest */
    private onRsh: (from: string, f: RshFrame) => void,
    /** a migration's progress sample from a source host agent */
    private onProgress: (op: string, progress: unknown) => void,
  ) {}

  /** A guest agent client for VM `name`, wired to the rsh relay. */
  client(name: string): GuestClient {
    const c = new GuestClient(name);
    c.on('rsh', (f: RshFrame) => this.onRsh(name, f));
    return c;
  }

  /** The Slurm job whose node layer names this job's taps and MACs (jobs of ordinary users). */
  private layerJob(): string | undefined {
    return this.job.cluster?.nodeLayer?.job;
  }

  /** Add VM `name` (index i) on `host`; `mac`/`ip` default to the job's scheme. */
  add(name: string, index: number, host: string, o: { mac?: string; ip?: string; tap?: string; state?: VmState['state'] } = {}): VmState {
    const lj = this.layerJob();
    const v: VmState = {
      name, index, host,
      // with the node layer, root derives the tap and the MAC from the job and the index (node/names.ts)
      mac: lj ? vmMacFor(lj, index) : o.mac ?? vmMac(this.job.macSeed, index),
      ip: o.ip ?? this.job.cluster!.guestIp(index),
      tap: lj ? vmTap(lj, index) : o.tap ?? `symtap${index}`,
      client: this.client(name),
      state: o.state ?? 'booting',
    };
    this.job.vms.set(name, v);
    return v;
  }

  /**
   * The VM's interconnect device on `host`, claimed there if it holds none yet: a NIC is the VM's own
   * (nothing to claim); a VF is what the host agent hands out (dev.claim: idempotent, so a VM asking
   * again, or a successor coordinator asking, gets the VF it already holds).
   */
  async claim(vm: VmState, host = vm.host): Promise<InterconnectDevice> {
    let d: InterconnectDevice;
    if (deviceKind(this.job.config) === 'nic') d = nicFor(this.job.config, vm);
    else {
      const lj = this.layerJob();
      // under the node layer the host agent offers the VFs root claimed for the job first (job record)
      const offers = lj ? vfOffersOrNone(this.job.config, host) : vfOffers(this.job.config, host);
      d = vfioFor(await this.agents.peer(host).call('dev.claim', { vm: vm.name, offers, ...(lj ? { nodeLayerJob: lj } : {}) }, { timeoutMs: 10_000 }), vm);
    }
    this.held.set(`${vm.name}@${host}`, d);
    return d;
  }

  /** The VM no longer needs a device on `host` (it left, or a migration there was rolled back). */
  async release(vm: VmState, host: string): Promise<{ released?: string }> {
    this.held.delete(`${vm.name}@${host}`);
    if (deviceKind(this.job.config) === 'nic') return {};
    const r = await this.agents.peer(host).call('dev.release', { vm: vm.name }, { timeoutMs: 10_000 });
    return r.released ? { released: r.released.pci } : {};
  }

  /** The device the VM was last handed on `host` (undefined: none claimed by this coordinator). */
  device(vm: VmState, host = vm.host): InterconnectDevice | undefined {
    return this.held.get(`${vm.name}@${host}`);
  }

  spec(vm: VmState, device: InterconnectDevice | undefined, host = vm.host): VmSpec {
    const cfg = this.job.config;
    // per host: source and destination of a migration may share a filesystem (local mode)
    const dir = path.join(this.job.runDir, host, vm.name);
    const nic: string[] = [];
    if (cfg.migration.quiesce === 'failover') {
      // part of the VM on every host (migrates with it), so source and destination have it alike
      const sb = this.standby(vm);
      nic.push('-netdev', `tap,id=${STANDBY.netdevId},ifname=${sb.tap},script=no,downscript=no`);
      nic.push('-device', `virtio-net-pci,netdev=${STANDBY.netdevId},id=${STANDBY.deviceId},mac=${sb.mac},bus=${STANDBY.bus}`);
    }
    if (device) nic.push(...bootArgs(device));
    const image = this.job.image!;
    return {
      name: vm.name,
      runDir: dir,
      accel: this.job.accel,
      memoryMiB: cfg.vm.memoryMiB,
      cpus: cfg.vm.cpus,
      machine: cfg.vm.machine,
      kernel: image.kernel,
      initrd: image.initrd,
      rootfs: image.rootfs,
      ...(image.rootFormat && image.rootFormat !== 'raw' ? { rootFormat: image.rootFormat } : {}),
      append: `console=ttyS0 root=/dev/vda ro quiet panic=-1 symrun.hostname=${vm.name}`,
      agentSocket: path.join(dir, 'agent.sock'),
      agentPortName: DEFAULTS.agent.portName,
      rootPorts: DEFAULTS.interconnect.rootPorts,
      sandbox: true,
      holdTerm: true,
      extraArgs: [...cfg.vm.extraArgs, ...nic],
    };
  }

  /** The failover adapter's standby NIC of a VM (tap, MAC). */
  standby(vm: VmState): { tap: string; mac: string } {
    const lj = this.layerJob();
    return lj ? { tap: standbyTap(lj, vm.index), mac: vmMacFor(lj, vm.index, 'standby') } : { tap: STANDBY.tap(vm.index), mac: vmMac(this.job.macSeed, vm.index, 'standby') };
  }

  /**
   * Host taps a VM needs on a host: the interconnect stand-in (a NIC) and the failover standby. With the
   * node layer, the host agent asks the node helper for them (it makes every tap of the VM at once).
   */
  taps(vm: VmState, bridge: string, withDevice: boolean): TapRequest[] {
    const failover = this.job.config.migration.quiesce === 'failover';
    const lj = this.layerJob();
    if (lj) return [{ tap: vm.tap, bridge, helper: { job: lj, vm: vm.index, ip: vm.ip, standby: failover } }];
    const taps: TapRequest[] = [];
    if (withDevice && this.job.config.interconnect.type === 'emulated') taps.push({ tap: vm.tap, bridge });
    if (failover) taps.push({ tap: STANDBY.tap(vm.index), bridge });
    return taps;
  }

  async boot(name: string): Promise<void> {
    const vm = this.job.vms.get(name)!;
    const host = this.job.cluster!.hosts.find((h) => h.name === vm.host)!;
    const spec = this.spec(vm, await this.claim(vm));
    fs.mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    await this.agents.peer(vm.host).call('vm.start', { spec, taps: this.taps(vm, host.bridge, true) }, { timeoutMs: 120_000 });
    try {
      await vm.client.ready(DEFAULTS.agent.bootTimeoutMs, this.job.opts.signal);
    } catch (e) {
      const con = tail(path.join(spec.runDir, `${vm.name}.console.log`), 1500);
      if (con.includes(NO_AGENT_CONSOLE)) throw noAgentError(this.job.image!.disk ?? this.job.image!.rootfs, `${vm.name}'s initrd found no /opt/symrun/dist/guest/src/agent.js in the root`);
      throw new SymError('ESYM_BOOT', { message: `${vm.name} did not come up: ${(e as Error).message}`, fix: `console of ${vm.name}:\n${con}` });
    }
    vm.state = 'ready';
  }

  /** The guest's interconnect configuration (at boot, and again after every move). */
  netConfigArgs(v: VmState): Record<string, unknown> {
    const cfg = this.job.config;
    const mtu = this.job.cluster?.nodeLayer?.mtu;
    return {
      ...findArgs(this.device(v), v.mac), name: cfg.network.guestIfName, address: `${v.ip}/${this.job.prefixLenOverride ?? this.job.cluster!.prefixLen}`, announce: true, waitMs: 15_000,
      ...(mtu ? { mtu } : {}),
      ...(cfg.migration.quiesce === 'failover' ? { standbyMac: this.standby(v).mac } : {}),
      // transport rdma on an emulated interconnect: Soft-RoCE on the interface (the bond, with failover)
      ...(cfg.interconnect.transport === 'rdma' && cfg.interconnect.type === 'emulated' ? { rxe: RXE_DEVICE } : {}),
    };
  }

  /** Names of every guest in every guest's hosts file, then the interconnect configured. */
  async configureNetwork(): Promise<void> {
    const vms = [...this.job.vms.values()];
    const entries: Array<[string, string]> = vms.map((v) => [v.ip, v.name]);
    await Promise.all(vms.map(async (v) => {
      await v.client.request('hosts', { entries });
      await v.client.request('net-config', this.netConfigArgs(v));
    }));
  }

  /** A host agent's event: route it to the VM it concerns (if that VM belongs to that host now). */
  onHostEvent(p: RpcPeer, ev: EventOf<HostAgentEvents>): void {
    const named = this.job.vms.get(ev.data.vm);
    const vm = named && named.host === p.name ? named : undefined;
    switch (ev.name) {
      case 'mig.progress':
        if ('progress' in ev.data) this.onProgress(ev.data.op, ev.data.progress);
        break;
      case 'guest.frame':
        vm?.client.receive(ev.data.frame);
        break;
      case 'guest.link':
        if (!vm) break;
        if (ev.data.up) vm.client.attach((frame) => this.agents.peer(vm.host).notify('guest.send', { vm: vm.name, frame }));
        else vm.client.detach('link down');
        break;
      case 'qmp.event':
        // the guest opened the agent's port: sync now instead of at the next retry tick
        if (vm && ev.data.event === 'VSERPORT_CHANGE' && (ev.data.data as { open?: unknown } | null)?.open === true) vm.client.resync();
        break;
      case 'vm.exit': {
        const d = ev.data;
        if (named && !vm && !d.expected) this.job.say(`QEMU of ${named.name} on ${p.name} exited (${d.code ?? d.signal}); the VM runs on ${named.host}`);
        if (vm && !d.expected && this.job.state !== 'tearing-down') this.job.say(`${vm.name} stopped unexpectedly (exit ${d.code ?? d.signal})`);
        // a VM that ends while it boots (the initrd powers off when the root is unusable) fails its boot now,
        // not after the boot timeout
        if (vm && vm.state === 'booting' && !d.expected) vm.client.close();
        if (vm) vm.state = 'stopped';
        break;
      }
      default:
        break;
    }
  }

  /** Every guest client is ready again (bounded): after a move, a restore or a coordinator restart. */
  allReady(): Promise<void> {
    return Promise.all([...this.job.vms.values()].map((v) => v.client.ready(PROTOCOL_DEFAULTS.finishTimeoutMs))).then(() => undefined);
  }
}
