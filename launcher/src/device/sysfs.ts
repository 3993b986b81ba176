// Access to sysfs, /dev and /proc below a configurable root ("/" in production; a fake tree in tests).
// Every path is relative to the root and built by the device layer from checked parts (PCI addresses,
// driver and group names read back from sysfs and checked): nothing here accepts a path from a user, and
// a path with '..', an empty part or a leading '/' is refused.
//
// Sysfs rules the real implementation follows: an attribute is written with one write(2) on a file opened
// O_WRONLY without O_CREAT (a missing attribute is an error, never a new file), and the kernel's answer
// (EBUSY, ENODEV, EINVAL …) comes back as the thrown error's code.
import fs from 'node:fs';
import path from 'node:path';

export interface NodeOwner { uid: number; gid: number; mode: number }

export interface DeviceIO {
  /** absolute root every path is below */
  readonly root: string;
  /** the file's text, or undefined if it does not exist */
  read(rel: string): string | undefined;
  /** a symlink's target as stored, or undefined if it is no symlink / does not exist */
  readlink(rel: string): string | undefined;
  /** entries of a directory, sorted; [] if it does not exist */
  list(rel: string): string[];
  exists(rel: string): boolean;
  /** one write of data to an existing attribute (throws the kernel's error) */
  write(rel: string, data: string): void;
  /** owner and permission bits of a device node, or undefined if it does not exist */
  owner(rel: string): NodeOwner | undefined;
  /** chown + chmod of a device node */
  setOwner(rel: string, uid: number, gid: number, mode: number): void;
}

export function checkRel(rel: string): string {
  if (typeof rel !== 'string' || rel === '' || rel.startsWith('/') || rel.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`device layer: refusing path ${JSON.stringify(rel)} (relative, no '..', no empty parts)`);
  }
  return rel;
}

/** The real thing: files below `root`. */
export class FsDeviceIO implements DeviceIO {
  readonly root: string;

  constructor(root = '/') {
    this.root = path.resolve(root);
  }

  protected abs(rel: string): string {
    return path.join(this.root, checkRel(rel));
  }

  read(rel: string): string | undefined {
    try {
      return fs.readFileSync(this.abs(rel), 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  readlink(rel: string): string | undefined {
    try {
      return fs.readlinkSync(this.abs(rel));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EINVAL') return undefined;
      throw e;
    }
  }

  list(rel: string): string[] {
    try {
      return fs.readdirSync(this.abs(rel)).sort();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw e;
    }
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.abs(rel));
  }

  write(rel: string, data: string): void {
    const fd = fs.openSync(this.abs(rel), fs.constants.O_WRONLY);
    try {
      fs.writeSync(fd, data);
    } finally {
      fs.closeSync(fd);
    }
  }

  owner(rel: string): NodeOwner | undefined {
    try {
      const st = fs.statSync(this.abs(rel));
      return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  setOwner(rel: string, uid: number, gid: number, mode: number): void {
    const p = this.abs(rel);
    // the node must be a character device (or, below a test root, a plain file): never follow a link
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) throw Object.assign(new Error(`${p} is a symbolic link`), { code: 'ELOOP' });
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  }
}

/** The last path component of a symlink target ("../../../bus/pci/drivers/iavf" -> "iavf"). */
export function linkName(target: string | undefined): string | undefined {
  if (!target) return undefined;
  const b = target.replace(/\/+$/, '').split('/').pop();
  return b || undefined;
}
