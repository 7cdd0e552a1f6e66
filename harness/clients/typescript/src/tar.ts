// Just enough tar for workspace archives: reading members (ustar, pax `path`
// records and GNU long names) to check limits and drop excluded paths, and
// writing files, directories and symlinks with pax records for long names.
// airlockd parses and writes the archives itself, inside the sandbox; this
// code never touches the host filesystem.

const BLOCK = 512;

export type TarMember = {
  name: string; // normalized: no leading "./", no trailing "/"
  type: 'file' | 'dir' | 'symlink' | 'other';
  typeflag: string;
  size: number;
  /** The member's raw blocks (its headers, pax/GNU records included, and data). */
  start: number;
  end: number;
};

function readString(buf: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && buf[end] !== 0) end++;
  return Buffer.from(buf.subarray(off, end)).toString('utf8');
}

function readOctal(buf: Uint8Array, off: number, len: number): number {
  if (buf[off]! & 0x80) {
    // base-256 (GNU) for big sizes
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + buf[i]!;
    return v;
  }
  const s = readString(buf, off, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function normalize(name: string): string {
  let n = name;
  while (n.startsWith('./')) n = n.slice(2);
  while (n.endsWith('/')) n = n.slice(0, -1);
  return n === '.' ? '' : n;
}

function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const text = Buffer.from(data).toString('utf8');
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    if (sp < 0) break;
    const len = parseInt(text.slice(i, sp), 10);
    if (!(len > 0)) break;
    const record = text.slice(sp + 1, i + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}

/** The members of a tar archive, in order. Throws on a malformed archive. */
export function listTar(buf: Uint8Array): TarMember[] {
  const members: TarMember[] = [];
  let off = 0;
  let start = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  while (off + BLOCK <= buf.length) {
    const header = buf.subarray(off, off + BLOCK);
    if (header.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
    if (sum !== readOctal(header, 148, 8)) throw new Error(`tar: bad header checksum at offset ${off}`);
    const typeflag = String.fromCharCode(header[156] || 48);
    const size = readOctal(header, 124, 12);
    const dataStart = off + BLOCK;
    const dataEnd = dataStart + size;
    if (dataEnd > buf.length) throw new Error(`tar: member at offset ${off} runs past the end`);
    const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'L') {
      longName = readString(buf, dataStart, size);
      off = next;
      continue;
    }
    if (typeflag === 'x') {
      const pax = parsePax(buf.subarray(dataStart, dataEnd));
      if (pax.path !== undefined) paxPath = pax.path;
      off = next;
      continue;
    }
    if (typeflag === 'g') {
      off = next;
      start = next;
      continue;
    }
    const prefix = readString(header, 345, 155);
    const base = readString(header, 0, 100);
    const rawName = paxPath ?? longName ?? (prefix ? `${prefix}/${base}` : base);
    const type =
      typeflag === '0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'dir' : typeflag === '2' ? 'symlink' : 'other';
    members.push({ name: normalize(rawName), type, typeflag, size: type === 'file' ? size : 0, start, end: next });
    longName = undefined;
    paxPath = undefined;
    off = next;
    start = next;
  }
  return members;
}

/** The archive without the members `drop` selects (and their pax/long-name records). */
export function filterTar(buf: Uint8Array, drop: (name: string) => boolean): Uint8Array {
  const members = listTar(buf);
  const kept = members.filter((m) => !drop(m.name));
  if (kept.length === members.length) return buf;
  const parts = kept.map((m) => buf.subarray(m.start, m.end));
  parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

function octal(value: number, len: number): string {
  return value.toString(8).padStart(len - 1, '0') + '\0';
}

function header(name: string, typeflag: string, size: number, mode: number, linkname = '', mtime = 0): Uint8Array {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(typeflag, 156, 'ascii');
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function padded(data: Uint8Array): Uint8Array[] {
  const rest = data.length % BLOCK;
  return rest ? [data, new Uint8Array(BLOCK - rest)] : [data];
}

/** Builds a tar archive of files, directories and symlinks. */
export class TarWriter {
  private readonly parts: Uint8Array[] = [];

  private add(name: string, typeflag: string, data: Uint8Array, mode: number, linkname = ''): void {
    const mtime = Math.floor(Date.now() / 1000);
    if (Buffer.byteLength(name) > 99 || Buffer.byteLength(linkname) > 99) {
      let body = '';
      for (const [k, v] of [
        ['path', name],
        ...(linkname ? [['linkpath', linkname]] : []),
      ] as [string, string][]) {
        const rec = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(rec);
        len += String(len + String(len).length).length;
        body += `${len}${rec}`;
      }
      const pax = Buffer.from(body, 'utf8');
      this.parts.push(header('PaxHeader', 'x', pax.length, 0o644), ...padded(pax));
    }
    this.parts.push(header(name.slice(0, 99), typeflag, data.length, mode, linkname.slice(0, 99), mtime), ...padded(data));
  }

  file(name: string, data: Uint8Array, mode = 0o644): void {
    this.add(name, '0', data, mode);
  }

  directory(name: string, mode = 0o755): void {
    this.add(name.endsWith('/') ? name : `${name}/`, '5', new Uint8Array(0), mode);
  }

  symlink(name: string, target: string): void {
    this.add(name, '2', new Uint8Array(0), 0o777, target);
  }

  finish(): Uint8Array {
    return Buffer.concat([...this.parts, new Uint8Array(BLOCK * 2)]);
  }
}
