// The List* filters (ListPodSandbox, ListContainers and the two stats lists): every field that
// is set must match. One label matcher, labelsMatch, serves them all.

/** CRI's label_selector: every key of the selector present with the same value (ANDed); none selects all. */
export function labelsMatch(labels: Readonly<Record<string, string>> | undefined, selector: Readonly<Record<string, string>> | undefined): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels?.[k] !== v) return false;
  return true;
}

/** What a sandbox and a container filter share: the id by prefix, the state, the labels. */
export interface RecordFilter<S extends string> {
  id?: string;
  state?: S;
  labelSelector?: Record<string, string>;
}

export function recordMatches<S extends string>(r: { id: string; state: S; config: { labels: Record<string, string> } }, f: RecordFilter<S> | null | undefined): boolean {
  if (!f) return true;
  if (f.id && !r.id.startsWith(f.id)) return false;
  if (f.state && r.state !== f.state) return false;
  return labelsMatch(r.config.labels, f.labelSelector);
}
