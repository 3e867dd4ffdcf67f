import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { EphError } from '../../core/errors.ts';
import { findExecutable } from './executables.ts';

/** What instances may reach beyond their own namespace (besides the host's appliance ports). */
export type Egress = 'public' | 'none';

/** Options of {@link Firewall}. */
export interface FirewallOptions {
  /** The driver's name prefix: host veths are `v<prefix>…`, the chain is named after it. */
  prefix: string;
  /** The instance subnet (never reachable from an instance, whatever the egress). */
  subnet: string;
  egress: Egress;
}

/** The iptables commands of one working backend (nf_tables or legacy). */
export interface FirewallTools {
  v4: string;
  v4restore: string;
  /** Null when the host has no IPv6 (nothing to filter) or no ip6tables. */
  v6: string | null;
  v6restore: string | null;
}

/**
 * Address ranges no instance may reach whatever the egress: RFC 1918, shared
 * address space (carrier NAT), link-local (cloud metadata services), loopback,
 * "this network", multicast and reserved. The instance subnet is added per cloud.
 */
export const PRIVATE_RANGES: readonly string[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
];

/** iptables' multiport match takes at most 15 ports per rule. */
const MULTIPORT_MAX = 15;

// REJECT rather than DROP: a refused tenant learns nothing more, and its
// connection attempts fail at once instead of tying up sockets until timeout.
const REJECT4 = '-j REJECT --reject-with icmp-admin-prohibited';
const REJECT6 = '-j REJECT --reject-with adm-prohibited';

/** Name of the cloud's own chain (in filter and nat, IPv4 and IPv6): `<prefix>-instances`. */
export function chainName(prefix: string): string {
  return `${prefix}-instances`;
}

/**
 * The rules of the cloud's IPv4 filter chain, in order, as iptables-restore
 * lines. The chain only sees packets that come in from an instance veth
 * (INPUT: to the host; FORWARD: to anywhere else).
 *
 * @example
 * filterRules({ prefix: 'eph', subnet: '10.213.0.0/16', egress: 'none' }, [40123])
 */
export function filterRules(opts: FirewallOptions, hostPorts: readonly number[]): string[] {
  const c = chainName(opts.prefix);
  const rules = [
    // Replies to connections the host opened (the gate asking the app on 8080) and to allowed ones.
    `-A ${c} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
  ];
  const ports = [...new Set(hostPorts)].filter((p) => Number.isInteger(p) && p > 0 && p < 65536).sort((a, b) => a - b);
  for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
    // Appliance TLS-PSK endpoints, on whichever host address they listen (the veth's, or a public one).
    rules.push(`-A ${c} -p tcp -m addrtype --dst-type LOCAL -m multiport --dports ${ports.slice(i, i + MULTIPORT_MAX).join(',')} -j ACCEPT`);
  }
  // Every other service of the host, on any of its addresses (also broadcast).
  rules.push(`-A ${c} -m addrtype --dst-type LOCAL ${REJECT4}`);
  rules.push(`-A ${c} -m addrtype --dst-type BROADCAST ${REJECT4}`);
  for (const range of [...PRIVATE_RANGES, opts.subnet]) rules.push(`-A ${c} -d ${range} ${REJECT4}`);
  rules.push(opts.egress === 'public' ? `-A ${c} -j ACCEPT` : `-A ${c} ${REJECT4}`);
  return rules;
}

/**
 * Finds a working iptables on `path` (default: PATH, then /usr/sbin and /sbin,
 * where Debian puts it): the default `iptables` (nf_tables on Debian), else
 * `iptables-legacy`. Returns the reason when none works.
 */
export function detectFirewallTools(path = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`): FirewallTools | string {
  if (process.getuid?.() !== 0) return 'not root';
  for (const suffix of ['', '-legacy']) {
    const v4 = findExecutable(`iptables${suffix}`, path);
    const v4restore = findExecutable(`iptables${suffix}-restore`, path);
    if (!v4 || !v4restore || !works(v4)) continue;
    // A host without IPv6 has no link-local way to its services: nothing to filter there.
    const hasV6 = existsSync('/proc/net/if_inet6');
    const v6 = hasV6 ? findExecutable(`ip6tables${suffix}`, path) : null;
    const v6restore = hasV6 ? findExecutable(`ip6tables${suffix}-restore`, path) : null;
    if (hasV6 && (!v6 || !v6restore || !works(v6))) return `ip6tables${suffix} is missing or does not work (Debian package iptables)`;
    return { v4, v4restore, v6, v6restore };
  }
  return findExecutable('iptables', path) ? 'iptables does not work here (neither nf_tables nor legacy)' : 'iptables not installed (Debian package iptables)';
}

function works(iptables: string): boolean {
  return spawnSync(iptables, ['-w', '-S', 'INPUT'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

/**
 * The kernel-enforced network policy of one cloud's instances: a chain of its
 * own (`<prefix>-instances`), jumped to first from INPUT and FORWARD for
 * packets coming in from the cloud's veths (`-i v<prefix>+`). An instance then
 * reaches its own namespace (never leaves it), the appliance ports given to
 * {@link setHostPorts} on the host, and (egress `public`) public addresses,
 * masqueraded behind the host; never another instance, another host service
 * or a private range. IPv6 from instances is refused altogether (they have
 * no IPv6 address; link-local would reach the host). Every change replaces the
 * whole chain in one iptables-restore transaction, so a leftover of a killed
 * run is replaced, never duplicated.
 *
 * @example
 * const fw = new Firewall({ prefix: 'eph', subnet: '10.213.0.0/16', egress: 'public' }, tools);
 * await fw.install();
 * await fw.setHostPorts([40123]);
 * await fw.remove();
 */
export class Firewall {
  readonly chain: string;
  readonly #opts: FirewallOptions;
  readonly #tools: FirewallTools;
  #hostPorts: number[] = [];
  /** Changes run one after another: each rewrites the whole chain. */
  #queue: Promise<void> = Promise.resolve();

  constructor(opts: FirewallOptions, tools: FirewallTools) {
    this.#opts = opts;
    this.#tools = tools;
    this.chain = chainName(opts.prefix);
  }

  /** Creates the chains and jumps, or replaces them (and any leftover of an earlier run). */
  install(): Promise<void> {
    return this.#serial(() => this.#write());
  }

  /** The host ports instances may reach (appliance TLS-PSK endpoints); rewrites the chain. */
  setHostPorts(ports: readonly number[]): Promise<void> {
    return this.#serial(async () => {
      this.#hostPorts = [...ports];
      await this.#write();
    });
  }

  /** Deletes the jumps and the chains; never throws. */
  remove(): Promise<void> {
    return this.#serial(async () => {
      for (const { table, tool, restore } of this.#tables()) {
        // Each step on its own: what one leaves is no reason to leave the rest.
        const deletes = await this.#jumpDeletes(tool, table).catch((): string[] => []);
        if (deletes.length > 0) await this.#restore(restore, [`*${table}`, ...deletes, 'COMMIT']).catch(() => undefined);
        await run(tool, ['-w', '-t', table, '-F', this.chain]).catch(() => undefined);
        await run(tool, ['-w', '-t', table, '-X', this.chain]).catch(() => undefined);
      }
    });
  }

  #serial(work: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** The tables the firewall owns a chain in, with the commands that edit them. */
  #tables(): { table: string; tool: string; restore: string }[] {
    const { v4, v4restore, v6, v6restore } = this.#tools;
    const t = [
      { table: 'filter', tool: v4, restore: v4restore },
      { table: 'nat', tool: v4, restore: v4restore },
    ];
    if (v6 && v6restore) t.push({ table: 'filter', tool: v6, restore: v6restore });
    return t;
  }

  async #write(): Promise<void> {
    const c = this.chain;
    const veths = `v${this.#opts.prefix}+`;
    const v4 = [
      '*filter',
      // Declaring an existing chain under --noflush empties it: a leftover is replaced.
      `:${c} - [0:0]`,
      ...filterRules(this.#opts, this.#hostPorts),
      ...(await this.#jumpDeletes(this.#tools.v4, 'filter')),
      `-I INPUT 1 -i ${veths} -j ${c}`,
      `-I FORWARD 1 -i ${veths} -j ${c}`,
      'COMMIT',
      '*nat',
      `:${c} - [0:0]`,
      // Public egress leaves with the host's address: the instance subnet is private.
      ...(this.#opts.egress === 'public' ? [`-A ${c} -o ${veths} -j RETURN`, `-A ${c} -j MASQUERADE`] : []),
      ...(await this.#jumpDeletes(this.#tools.v4, 'nat')),
      `-I POSTROUTING 1 -s ${this.#opts.subnet} -j ${c}`,
      'COMMIT',
    ];
    await this.#restore(this.#tools.v4restore, v4);
    if (this.#tools.v6 && this.#tools.v6restore) {
      await this.#restore(this.#tools.v6restore, [
        '*filter',
        `:${c} - [0:0]`,
        // Neighbour discovery only, so that the refusal below reaches the app at once instead of a timeout.
        `-A ${c} -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT`,
        `-A ${c} -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT`,
        `-A ${c} ${REJECT6}`,
        ...(await this.#jumpDeletes(this.#tools.v6, 'filter')),
        `-I INPUT 1 -i ${veths} -j ${c}`,
        `-I FORWARD 1 -i ${veths} -j ${c}`,
        'COMMIT',
      ]);
    }
  }

  /** `-D` lines for every rule in the table's built-in chains that jumps to our chain. */
  async #jumpDeletes(tool: string, table: string): Promise<string[]> {
    const out = await run(tool, ['-w', '-t', table, '-S']);
    const deletes: string[] = [];
    for (const line of out.split('\n')) {
      const words = line.trim().split(/\s+/);
      if (words[0] === '-A' && words[1] !== this.chain && words.at(-1) === this.chain && words.at(-2) === '-j') {
        deletes.push(['-D', ...words.slice(1)].join(' '));
      }
    }
    return deletes;
  }

  async #restore(tool: string, lines: string[]): Promise<void> {
    // Another cloud on the host may commit at the same moment (nf_tables generation clash): retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await run(tool, ['-w', '--noflush'], lines.join('\n') + '\n');
        return;
      } catch (e) {
        if (attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
}

function run(cmd: string, args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new EphError('UNAVAILABLE', `${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}
