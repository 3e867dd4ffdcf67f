/**
 * Prometheus counters for the gate. Everything is a plain number in a
 * preallocated structure: recording a request costs two Map lookups and no
 * strings; the text is built only when /metrics is scraped.
 *
 * Host names are tenants' business: the public text ({@link GateMetrics.render})
 * has no host label; per-host series come from {@link GateMetrics.renderHosts},
 * which the API serves only to a host's owner or the operator.
 */

/** Upper bounds (seconds) of the request latency histogram. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Upper bounds (seconds) of the wake duration histogram. */
const WAKE_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];

class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (seconds <= b[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += seconds;
    this.count++;
  }

  render(name: string, out: string[]): void {
    let cum = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cum += this.counts[i]!;
      out.push(`${name}_bucket{le="${this.bounds[i]}"} ${cum}`);
    }
    out.push(`${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`);
  }
}

function label(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** The gate's metrics registry. */
export class GateMetrics {
  /** route host → status → count. Unknown hosts share one entry so that scanners cannot grow it. */
  readonly #requests = new Map<string, Map<number, number>>();
  readonly #latency = new Histogram(LATENCY_BUCKETS);
  readonly #wakeSeconds = new Histogram(WAKE_BUCKETS);
  #wakesOk = 0;
  #wakesFailed = 0;
  #idleReaps = 0;
  #running = 0;
  /** Open visitor connections (plain and TLS). */
  connections = 0;
  /** Open upgraded connections (WebSockets). */
  tunnels = 0;
  #upstreamConnects = 0;

  /** Records one answered request; `host` is the route host or '' for an unknown one. */
  request(host: string, status: number, seconds: number): void {
    let byStatus = this.#requests.get(host);
    if (byStatus === undefined) this.#requests.set(host, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    this.#latency.observe(seconds);
  }

  wake(ok: boolean, seconds: number): void {
    if (ok) this.#wakesOk++;
    else this.#wakesFailed++;
    this.#wakeSeconds.observe(seconds);
  }

  upstreamConnect(): void {
    this.#upstreamConnects++;
  }

  /** Set by whoever knows how many instances run (the instance service). */
  setRunningInstances(n: number): void {
    this.#running = n;
  }

  /** Called by the idle reaper for each instance it stops. */
  countIdleReap(): void {
    this.#idleReaps++;
  }

  /**
   * Per-host series for the hosts `include` accepts, Prometheus text: for an
   * owner (their own hosts) or the operator (all). Unknown hosts (`host=""`)
   * belong to nobody and are shown only when `include('')` says so.
   */
  renderHosts(include: (host: string) => boolean): string {
    const out: string[] = [
      '# HELP eph_gate_host_requests_total Requests answered by the gate, by route host and status.',
      '# TYPE eph_gate_host_requests_total counter',
    ];
    for (const [host, byStatus] of this.#requests) {
      if (!include(host)) continue;
      for (const [status, n] of byStatus) {
        out.push(`eph_gate_host_requests_total{host="${label(host)}",status="${status}"} ${n}`);
      }
    }
    return `${out.join('\n')}\n`;
  }

  /** Prometheus text exposition format 0.0.4, with no host names in it (served without credentials). */
  render(): string {
    const out: string[] = [
      '# HELP eph_gate_requests_total Requests answered by the gate, by status (all hosts).',
      '# TYPE eph_gate_requests_total counter',
    ];
    // Summed here, at scrape time, so that recording a request stays one per-host update.
    const byStatus = new Map<number, number>();
    for (const m of this.#requests.values()) for (const [status, n] of m) byStatus.set(status, (byStatus.get(status) ?? 0) + n);
    for (const [status, n] of [...byStatus].sort((a, b) => a[0] - b[0])) out.push(`eph_gate_requests_total{status="${status}"} ${n}`);
    out.push(
      '# HELP eph_gate_request_duration_seconds Time from request head to the end of the response.',
      '# TYPE eph_gate_request_duration_seconds histogram',
    );
    this.#latency.render('eph_gate_request_duration_seconds', out);
    out.push(
      '# HELP eph_gate_wakes_total Instance wakes started by the gate, by result.',
      '# TYPE eph_gate_wakes_total counter',
      `eph_gate_wakes_total{result="ok"} ${this.#wakesOk}`,
      `eph_gate_wakes_total{result="error"} ${this.#wakesFailed}`,
      '# HELP eph_gate_wake_duration_seconds Time for a sleeping instance to accept connections.',
      '# TYPE eph_gate_wake_duration_seconds histogram',
    );
    this.#wakeSeconds.render('eph_gate_wake_duration_seconds', out);
    out.push(
      '# HELP eph_gate_active_connections Open visitor connections.',
      '# TYPE eph_gate_active_connections gauge',
      `eph_gate_active_connections ${this.connections}`,
      '# HELP eph_gate_websockets Open upgraded (WebSocket) connections.',
      '# TYPE eph_gate_websockets gauge',
      `eph_gate_websockets ${this.tunnels}`,
      '# HELP eph_gate_upstream_connects_total New connections opened to instances.',
      '# TYPE eph_gate_upstream_connects_total counter',
      `eph_gate_upstream_connects_total ${this.#upstreamConnects}`,
      '# HELP eph_instances_running Instances running now.',
      '# TYPE eph_instances_running gauge',
      `eph_instances_running ${this.#running}`,
      '# HELP eph_idle_reaps_total Instances stopped because they were idle.',
      '# TYPE eph_idle_reaps_total counter',
      `eph_idle_reaps_total ${this.#idleReaps}`,
    );
    return `${out.join('\n')}\n`;
  }
}
