// Text helpers of the search module, free of I/O: the words of a query and of a document, typo
// correction by edit distance, and the key a query is cached under.

/** Words as the vocabulary holds them: lower case runs of letters and digits. */
export function tokens(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t.length >= 1 && t.length <= 40);
}

/** Spaces collapsed, lower case: the same query typed differently shares a cache entry. */
export function normalizeQuery(text: string): string {
  return text.trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * The words of a web-search query that must match for it to return anything: plain words, not
 * excluded ones (-word), not the `or` operator, not inside quotes' punctuation. These are the
 * candidates for typo correction.
 */
export function requiredWords(query: string): string[] {
  const out: string[] = [];
  // A word is excluded when a '-' starts it (web-search syntax); quotes and the rest are kept.
  for (const m of query.matchAll(/(^|[^\p{L}\p{N}])(-?)([\p{L}\p{N}]+)/gu)) {
    const word = (m[3] ?? '').toLowerCase();
    if (m[2] === '-' || word === 'or' || word.length === 0) continue;
    if (!out.includes(word)) out.push(word);
  }
  return out;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
export function editDistance(a: string, b: string, max = Number.POSITIVE_INFINITY): number {
  const s = [...a];
  const t = [...b];
  if (Math.abs(s.length - t.length) > max) return max + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, prev2[j - 2]! + 1);
      cur.push(d);
      if (d < rowMin) rowMin = d;
    }
    if (rowMin > max) return max + 1;
    prev2 = prev;
    prev = cur;
  }
  return prev[t.length]!;
}

/** How many edits a word of this length may need to count as a typo of another (short words: none). */
export function typoBudget(length: number): number {
  return length < 3 ? 0 : length <= 4 ? 1 : 2;
}

/**
 * The best correction among the indexed words nearest to an unknown word: fewest edits within the
 * word's budget, then the most documents (the likelier intent), then trigram order.
 */
export function chooseCorrection(word: string, nearest: readonly (readonly [string, number])[]): string | undefined {
  const budget = typoBudget([...word].length);
  let best: { word: string; distance: number; documents: number } | undefined;
  for (const [candidate, documents] of nearest) {
    if (candidate === word || documents <= 0 || candidate.includes(' ')) continue;
    const distance = editDistance(word, candidate, budget);
    if (distance > budget) continue;
    if (!best || distance < best.distance || (distance === best.distance && documents > best.documents)) best = { word: candidate, distance, documents };
  }
  return best?.word;
}

/** The query with each corrected word replaced (whole words only, any case), operators kept. */
export function applyCorrections(query: string, fixes: ReadonlyMap<string, string>): string {
  return query.replace(/[\p{L}\p{N}]+/gu, (w) => fixes.get(w.toLowerCase()) ?? w);
}
