import { createSocket, type Socket } from 'node:dgram';

/**
 * A tiny authoritative DNS server on loopback UDP that answers TXT queries
 * from a map (name → records, each record a list of strings) and NXDOMAIN
 * for anything else. Enough for node:dns's Resolver pointed at it; it is a
 * test stand-in for a zone the tenant controls.
 */
export interface TxtDnsServer {
  /** `127.0.0.1:port`, for Resolver.setServers / EPH_DNS_SERVERS. */
  address: string;
  records: Map<string, string[][]>;
  /** Names asked, lower case, in order. */
  queries: string[];
  close(): Promise<void>;
}

export async function startTxtDnsServer(): Promise<TxtDnsServer> {
  const records = new Map<string, string[][]>();
  const queries: string[] = [];
  const sock: Socket = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const q = parseQuestion(msg);
    if (!q) return;
    queries.push(q.name);
    const answers = q.type === 16 ? (records.get(q.name) ?? null) : null;
    sock.send(answer(msg, q.end, answers), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    address: `127.0.0.1:${sock.address().port}`,
    records,
    queries,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}

function parseQuestion(msg: Buffer): { name: string; type: number; end: number } | null {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let i = 12;
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i]!;
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  if (i + 5 > msg.length) return null;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(i + 1), end: i + 5 };
}

function answer(query: Buffer, questionEnd: number, records: string[][] | null): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  const rd = query[2]! & 0x01;
  header[2] = 0x84 | rd; // QR, AA, RD copied
  header[3] = records ? 0x00 : 0x03; // NOERROR or NXDOMAIN
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records ? records.length : 0, 6);
  const parts: Buffer[] = [header, query.subarray(12, questionEnd)];
  for (const rec of records ?? []) {
    const rdata = Buffer.concat(rec.map((s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)])));
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(16, 2); // TXT
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    parts.push(rr, rdata);
  }
  return Buffer.concat(parts);
}
