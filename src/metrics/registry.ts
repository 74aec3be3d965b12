// A small Prometheus client: counters, gauges and histograms with labels, rendered in the text
// exposition format (version 0.0.4). Its surface is prom-client's as vmlet uses it (Counter,
// Gauge with a collect() hook, Histogram, Registry.metrics()), so that package can replace this
// file alone; it was written because the npm registry could not be reached when metrics landed.
// Pure: no I/O, so test/unit/metrics.test.ts checks the text it renders.

export type Labels<L extends string> = Partial<Record<L, string | number>>;

export interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  /** Registries to join (default: the process-wide `register`); [] joins none. */
  registers?: Registry[];
}

type Kind = 'counter' | 'gauge' | 'histogram';

/** One rendered sample line: name suffix, labels in order, value. */
interface Sample {
  suffix: string;
  labels: Array<[string, string]>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Prometheus renders +Inf, -Inf and NaN by name; integers without a fraction. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

abstract class Metric<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly kind: Kind;

  constructor(o: MetricOptions<L>) {
    if (!NAME.test(o.name)) throw new TypeError(`invalid metric name ${JSON.stringify(o.name)}`);
    for (const l of o.labelNames ?? []) if (!LABEL.test(l) || l === 'le') throw new TypeError(`invalid label name ${JSON.stringify(l)} on ${o.name}`);
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
    for (const r of o.registers ?? [register]) r.registerMetric(this);
  }

  /** The series key of `labels` (values in labelNames order); unknown label names are refused. */
  protected key(labels: Labels<L> | undefined): string {
    for (const k of Object.keys(labels ?? {})) {
      if (!this.labelNames.includes(k as L)) throw new TypeError(`metric ${this.name} has no label ${JSON.stringify(k)}`);
    }
    return JSON.stringify(this.labelNames.map((n) => String(labels?.[n] ?? '')));
  }

  protected pairs(key: string): Array<[string, string]> {
    const values = JSON.parse(key) as string[];
    return this.labelNames.map((n, i): [string, string] => [n, values[i] ?? '']).filter(([, v]) => v !== '');
  }

  /** Brings the figures up to date before a scrape (gauges computed from state). */
  async refresh(): Promise<void> {}

  abstract samples(): Sample[];

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.kind}`];
    for (const s of this.samples()) {
      const labels = s.labels.length ? `{${s.labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
      lines.push(`${this.name}${s.suffix}${labels} ${formatValue(s.value)}`);
    }
    return lines.join('\n');
  }
}

/** Split (labels?, value?) the way prom-client's inc/set/observe take them. */
function args<L extends string>(a: Labels<L> | number | undefined, b: number | undefined, dflt: number): [Labels<L> | undefined, number] {
  return typeof a === 'number' ? [undefined, a] : [a, b ?? dflt];
}

export class Counter<L extends string = string> extends Metric<L> {
  readonly kind = 'counter';
  private readonly values = new Map<string, number>();

  inc(labels?: Labels<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 1);
    if (!(v >= 0)) throw new TypeError(`counter ${this.name} cannot go down (inc by ${v})`);
    const k = this.key(l);
    this.values.set(k, (this.values.get(k) ?? 0) + v);
  }

  /** The current value of one series (0 when it was never incremented). */
  get(labels?: Labels<L>): number {
    return this.values.get(this.key(labels)) ?? 0;
  }

  samples(): Sample[] {
    return [...this.values].map(([k, value]) => ({ suffix: '', labels: this.pairs(k), value }));
  }
}

export interface GaugeOptions<L extends string> extends MetricOptions<L> {
  /** Called before each scrape to set the gauge from state (prom-client's collect hook). */
  collect?: (this: Gauge<L>) => void | Promise<void>;
}

export class Gauge<L extends string = string> extends Metric<L> {
  readonly kind = 'gauge';
  private readonly values = new Map<string, number>();
  private readonly collectFn: GaugeOptions<L>['collect'];

  constructor(o: GaugeOptions<L>) {
    super(o);
    this.collectFn = o.collect;
  }

  set(labels: Labels<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 0);
    this.values.set(this.key(l), v);
  }

  /** Drops every series (a collect hook starts from nothing, so gone label sets disappear). */
  reset(): void {
    this.values.clear();
  }

  override async refresh(): Promise<void> {
    await this.collectFn?.call(this);
  }

  get(labels?: Labels<L>): number | undefined {
    return this.values.get(this.key(labels));
  }

  samples(): Sample[] {
    return [...this.values].map(([k, value]) => ({ suffix: '', labels: this.pairs(k), value }));
  }
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, ascending; +Inf is added. */
  buckets?: readonly number[];
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

/** prom-client's default buckets (seconds). */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram<L extends string = string> extends Metric<L> {
  readonly kind = 'histogram';
  readonly buckets: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(o: HistogramOptions<L>) {
    super(o);
    this.buckets = [...(o.buckets ?? DEFAULT_BUCKETS)].sort((a, b) => a - b);
  }

  observe(labels: Labels<L> | number, value?: number): void {
    const [l, v] = args(labels, value, 0);
    const k = this.key(l);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    // Buckets are cumulative when rendered; here each observation lands in its first bucket.
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) s.counts[i]! += 1;
    s.sum += v;
    s.count += 1;
  }

  /** Observations of one series so far, and their sum. */
  get(labels?: Labels<L>): { count: number; sum: number } {
    const s = this.series.get(this.key(labels));
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }

  samples(): Sample[] {
    const out: Sample[] = [];
    for (const [k, s] of this.series) {
      const labels = this.pairs(k);
      let acc = 0;
      this.buckets.forEach((b, i) => {
        acc += s.counts[i]!;
        out.push({ suffix: '_bucket', labels: [...labels, ['le', formatValue(b)]], value: acc });
      });
      out.push({ suffix: '_bucket', labels: [...labels, ['le', '+Inf']], value: s.count });
      out.push({ suffix: '_sum', labels, value: s.sum });
      out.push({ suffix: '_count', labels, value: s.count });
    }
    return out;
  }
}

export class Registry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly byName = new Map<string, Metric<string>>();

  registerMetric(m: Metric<string>): void {
    if (this.byName.has(m.name)) throw new TypeError(`metric ${m.name} is already registered`);
    this.byName.set(m.name, m);
  }

  getSingleMetric(name: string): Metric<string> | undefined {
    return this.byName.get(name);
  }

  /**
   * Every metric in the text format. All collect hooks run before anything is rendered, so a
   * hook may update other metrics too; a metric whose hook fails is left out of this scrape.
   */
  async metrics(): Promise<string> {
    const ok: Array<Metric<string>> = [];
    for (const m of this.byName.values()) {
      try {
        await m.refresh();
        ok.push(m);
      } catch {
        // one broken source must not cost the whole scrape
      }
    }
    return `${ok.map((m) => m.render()).join('\n')}\n`;
  }
}

/** The process-wide registry (prom-client's `register`): what vmlet's /metrics serves. */
export const register = new Registry();
