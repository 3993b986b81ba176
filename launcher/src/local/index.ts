// `symrun --local N`: emulated hosts as network namespaces joined through a switch namespace.
export {
  createLocalCluster, cleanupJob, findStaleJobs, netnsExecPrefix, requireRoot, pidsInNetns,
  type LocalHost, type LocalCluster, type CleanupReport, type CreateLocalClusterOpts,
} from './cluster.js';
export { ensureTap, deleteTap, tapSetupLines, type TapOpts } from './tap.js';
export {
  HOST_BRIDGE, SWITCH_BRIDGE, HOST_UPLINK, coordLinkName, switchNetns, hostNetns, parseNetnsName,
  parseSubnet, pickSubnet, guestAddress, hostAddress, coordinatorAddress, macForIp,
} from './names.js';
export { stateDir, statePath } from './state.js';
