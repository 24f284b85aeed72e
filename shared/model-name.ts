/**
 * A model name as Ollama resolves it: a name without a tag means ":latest" ("llama3" is "llama3:latest"),
 * so one model has one id in the model memory manager, `/api/ps` and `/api/tags`. A namespace ("library/x")
 * is kept; only the last segment decides whether a tag is there.
 */
export function withLatestTag(name: string): string {
  const trimmed = name.trim();
  const last = trimmed.slice(trimmed.lastIndexOf('/') + 1);
  return last.includes(':') ? trimmed : `${trimmed}:latest`;
}
