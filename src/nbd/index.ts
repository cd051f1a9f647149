export * from './target.js';
export { ExportTable, type ExportSpec, transmissionFlags } from './exports.js';
export {
  NbdServer,
  type ListenAddress,
  formatAddress,
  parseListenAddress,
  removeStaleSocket,
} from './server.js';
